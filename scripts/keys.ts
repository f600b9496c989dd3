// npm run keys:create -- --name NAME [--role-ids 1,3] [--description D]
//                        [--expires-at ISO | --expires-in 90d] [--change-reason R]
// Creates a key directly in the database (no running server needed) and prints it once.
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createKeyHasher } from '../src/auth/hasher.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { applyMigrations } from '../src/db/migrate.js';
import { createPrismaClient } from '../src/plugins/prisma.js';
import { EXPIRES_IN_HINT, expiresIn } from '../src/lib/duration.js';
import { AppError, sentenceOf } from '../src/lib/errors.js';
import { fieldErrors, ruleOf } from '../src/lib/validation.js';
import { createBody } from '../src/schemas/api-keys.js';
import { createApiKeyService } from '../src/services/api-keys.js';

const USAGE = `usage: npm run keys:create -- --name NAME [--role-ids 1,3] [--description TEXT]
                           [--expires-at 2027-01-31T00:00:00Z | --expires-in 90d] [--change-reason TEXT]
roles: 1 Administrator, 2 Operator, 3 Reader`;

class UsageError extends Error {}

function parse(argv: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        name: { type: 'string' },
        'role-ids': { type: 'string' },
        description: { type: 'string' },
        'expires-at': { type: 'string' },
        'expires-in': { type: 'string' },
        'change-reason': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) throw new UsageError('');
  if (!values.name) throw new UsageError('--name is required');
  if (values['expires-at'] && values['expires-in']) throw new UsageError('give --expires-at or --expires-in, not both');
  const roleIds = (values['role-ids'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      if (!/^\d+$/.test(s)) throw new UsageError(`--role-ids: "${s}" is not a role id`);
      return Number(s);
    });
  let expiresAt = values['expires-at'];
  if (values['expires-in']) {
    const at = expiresIn(values['expires-in']);
    if (!at) throw new UsageError(`--expires-in: ${EXPIRES_IN_HINT}`);
    expiresAt = at;
  }
  // The same rules as POST /api/v1/apikeys.
  const input = { name: values.name, roleIds, description: values.description, expiresAt, changeReason: values['change-reason'] };
  const parsed = createBody.safeParse(input, { error: ruleOf });
  if (!parsed.success) throw new UsageError(fieldErrors(parsed.error.issues, input, 'body', createBody).map(sentenceOf).join('; '));
  return parsed.data;
}

async function main(): Promise<number> {
  let input;
  try {
    input = parse(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message ? `keys:create: ${err.message}\n` : ''}${USAGE}\n`);
      return err.message ? 2 : 0;
    }
    throw err;
  }
  const config = loadConfig(process.env);
  const log = pino({ level: config.log.level === 'info' ? 'warn' : config.log.level }, process.stderr);
  const embedded = config.databaseUrl ? null : await startEmbeddedPostgres(config.dataDir, log, { ifInUse: 'attach', relocatable: config.dataDirDefault });
  const url = config.databaseUrl ?? embedded!.url;
  const { prisma } = createPrismaClient(url, config);
  try {
    await applyMigrations(url, { info: () => {}, debug: () => {} });
    const keys = createApiKeyService({ prisma, hasher: createKeyHasher(config.argon2), log });
    const { key, secret } = await keys.create(
      { type: 'system', id: null, name: 'keys:create', permissions: new Set(['*']) },
      {
        name: input.name,
        roleIds: input.roleIds,
        description: input.description,
        expiresAt: input.expiresAt,
        changeReason: input.changeReason ?? 'created with npm run keys:create',
      },
    );
    const roles = key.roles.map((r) => r.name).join(', ') || 'none';
    process.stderr.write(
      `Created API key "${key.name}" (id ${key.id}; roles: ${roles}; expires: ${key.expiresAt ?? 'never'}).\n` +
        'Store the key below now: it is not shown again.\n',
    );
    process.stdout.write(`${secret}\n`);
    return 0;
  } finally {
    await prisma.$disconnect();
    await embedded?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    const fields = err instanceof AppError && err.response.errors?.length ? ` (${err.response.errors.map(sentenceOf).join('; ')})` : '';
    const message = (err instanceof ConfigError || err instanceof Error ? err.message : String(err)) + fields;
    process.stderr.write(`keys:create: ${message}\n`);
    process.exit(1);
  },
);
