// `prisma generate` without Prisma's binary host: generating the client needs no native
// engine, but the CLI tries to download one unless PRISMA_SCHEMA_ENGINE_BINARY names a file.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let cli;
try {
  cli = require.resolve('prisma/build/index.js');
} catch {
  // The CLI is a dev dependency: a production-only install (`npm ci --omit=dev`) runs this hook
  // without it. That install runs the compiled `dist/`, which already holds the generated client.
  process.stderr.write('prisma-generate: the prisma CLI is not installed (production install); skipping generate\n');
  process.exit(0);
}
const env = { ...process.env };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath; // any existing file stops the download
env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
const r = spawnSync(process.execPath, [cli, 'generate', ...process.argv.slice(2)], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
