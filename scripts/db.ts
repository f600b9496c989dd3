// npm run db:migrate                         apply pending migrations
// npm run db:migration:create -- <name>     write a migration for changes to prisma/schema.prisma
// Uses DATABASE_DIRECT_URL, else DATABASE_URL, else the embedded PostgreSQL in DATA_DIR, and Prisma's
// WebAssembly schema engine, so it works where only the npm registry is reachable.
import pino from 'pino';
import { ConfigError, loadConfig } from '../src/config.js';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { applyMigrations, createMigration } from '../src/db/migrate.js';

const [command, name] = process.argv.slice(2);
const usage = 'usage: db.ts migrate | db.ts create <name>   (name: a-z, 0-9, _)';

async function main(): Promise<number> {
  if (command !== 'migrate' && command !== 'create') {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  if (command === 'create' && !name) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  const config = loadConfig(process.env);
  const log = pino({ level: config.log.level, redact: ['databaseUrl', '*.databaseUrl'] });
  const embedded = config.databaseUrl ? null : await startEmbeddedPostgres(config.dataDir, log, { ifInUse: 'attach', relocatable: config.dataDirDefault });
  // Never through a pooler in transaction mode: the migration lock is a session lock.
  const url = config.directDatabaseUrl ?? config.databaseUrl ?? embedded!.url;
  const engineLog = { info: (o: object, m: string) => log.info(o, m), debug: (m: string) => log.debug(m) };
  try {
    if (command === 'migrate') {
      await applyMigrations(url, engineLog);
    } else {
      const dir = await createMigration(url, name, engineLog);
      process.stdout.write(dir ? `created ${dir}\n` : 'no schema changes: nothing to create\n');
    }
    return 0;
  } finally {
    await embedded?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`db: ${err instanceof ConfigError ? err.message : err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
