// ESLint (flat config): typescript-eslint's recommended rules, no import cycles (type-only
// imports included), and imports only along the grain of the layers in src/ (README "Layout"):
//   lib ← db ← store ← auth ← services ← plugins ← routes ← app/server; schemas below store;
//   config.ts on lib alone; cli alone. (store uses auth's two leaf modules, permissions and
//   principal; lib/logger the Config type.) webhooks/ is a capability with its own layers: its
//   routes.ts is a route file, the rest sits at the services' level (the key service records
//   events through webhooks/outbox); policies/ (the scheduler) is a service too; usage/ is built like webhooks/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import noImportCycle from './eslint/no-import-cycle.js';

/** Layers a folder of src/ may not import from (and single modules, `folder/module`), and why. */
const against = (folders, why) => ({
  'no-restricted-imports': ['error', { patterns: folders.map((f) => ({ group: f.includes('/') ? [`../${f}.js`] : [`../${f}/*`, `../${f}.js`], message: why })) }],
});

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'src/generated/', 'coverage/', 'test-results/', 'bench/results/', 'packages/verify/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { keyward: { rules: { 'no-import-cycle': noImportCycle } } },
    languageOptions: {
      globals: {
        process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', fetch: 'readonly', performance: 'readonly',
        setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', AbortController: 'readonly',
      },
    },
    rules: {
      'keyward/no-import-cycle': 'error',
      // `_name` marks what is destructured away on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
      // Validating text for control characters is the point of those patterns.
      'no-control-regex': 'off',
    },
  },
  { files: ['src/lib/**'], rules: against(['db', 'store', 'auth', 'schemas', 'services', 'plugins', 'routes', 'cli', 'app'], 'lib/ is the bottom layer: it imports nothing else of ours') },
  { files: ['src/db/**'], rules: against(['store', 'auth', 'schemas', 'services', 'plugins', 'routes', 'cli', 'app'], 'db/ knows PostgreSQL, not what is built on it') },
  { files: ['src/auth/**', 'src/schemas/**'], rules: against(['services', 'plugins', 'routes', 'cli', 'app'], 'auth/ and schemas/ sit below the services') },
  // The keys' SQL: below auth and the services, beside db/. Of auth/ it uses only the rules of
  // permissions and the shape of a principal (leaf modules); nothing that authenticates.
  {
    files: ['src/store/**'],
    rules: against(
      ['services', 'plugins', 'routes', 'cli', 'app', 'auth/authenticator', 'auth/key-cache', 'auth/hasher', 'auth/verification-queue', 'auth/key-format'],
      'store/ is data access: it knows rows, not requests or verification',
    ),
  },
  { files: ['src/services/**'], rules: against(['plugins', 'routes', 'cli', 'app'], 'services do not know HTTP wiring') },
  { files: ['src/plugins/**'], rules: against(['routes', 'cli', 'app'], 'plugins do not import routes') },
  { files: ['src/webhooks/**', 'src/policies/**', 'src/usage/**'], ignores: ['src/webhooks/routes.ts', 'src/usage/routes.ts'], rules: against(['plugins', 'routes', 'cli', 'app'], 'webhooks/ and usage/ (but their routes.ts) and policies/ are services: they do not know HTTP wiring') },
  { files: ['src/webhooks/routes.ts', 'src/usage/routes.ts'], rules: against(['cli', 'app', 'store', 'db', 'generated'], 'routes call services: no SQL, no database access of their own') },
  { files: ['src/routes/**'], rules: against(['cli', 'app', 'store', 'db', 'generated'], 'routes call services: no SQL, no database access of their own') },
  // Its types may come from the API's schemas (the contract); nothing that runs may.
  { files: ['src/cli/**'], rules: against(['db', 'store', 'auth', 'services', 'plugins', 'routes', 'app'], 'the CLI talks to the server over HTTP only') },
  // config.ts is read first by everything: it may use lib/ and nothing above it.
  { files: ['src/config.ts'], rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['./*.js', './*/**', '!./lib/*.js'], message: 'config.ts may import lib/ only' }] }] } },
  // Tests read JSON replies: `any` there is the honest type.
  { files: ['test/**', 'bench/**'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
);
