// Resolves which PostgreSQL to use (DATABASE_URL, else the embedded default), proves that LISTEN
// hears what is sent through it (a pooler in transaction mode would silently break that), applies
// pending migrations over the direct connection, and stops the embedded server last when the app
// closes.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { startEmbeddedPostgres } from '../db/embedded-postgres.js';
import { proveNotifyRoundTrip } from '../db/key-events.js';
import { applyMigrations } from '../db/migrate.js';

export interface DatabaseInfo {
  /** The pool's (possibly through a pooler). */
  url: string;
  /** LISTEN, migrations, session locks: never through a pooler in transaction mode. */
  directUrl: string;
  kind: 'external' | 'embedded';
}

const where = (url: string) => {
  const u = new URL(url);
  return { host: u.hostname, port: u.port || '5432', name: u.pathname.slice(1) };
};

declare module 'fastify' {
  interface FastifyInstance {
    database: DatabaseInfo;
  }
}

async function databasePlugin(app: FastifyInstance, opts: { config: Config }) {
  const { config } = opts;
  const log = app.log.child({ component: 'database' });
  let info: DatabaseInfo;
  if (config.databaseUrl) {
    const pooled = where(config.databaseUrl);
    const direct = config.directDatabaseUrl ? where(config.directDatabaseUrl) : null;
    log.info(
      { database: 'external', ...pooled, ...(direct ? { direct } : {}) },
      `using PostgreSQL from DATABASE_URL at ${pooled.host}:${pooled.port}/${pooled.name}` +
        (direct ? `, DATABASE_DIRECT_URL at ${direct.host}:${direct.port}/${direct.name} for LISTEN and migrations` : ''),
    );
    info = { url: config.databaseUrl, directUrl: config.directDatabaseUrl ?? config.databaseUrl, kind: 'external' };
    // Before migrating: behind a pooler in transaction mode, the migration lock would not hold either.
    const proof = await proveNotifyRoundTrip(
      {
        listenUrl: info.directUrl,
        listenVariable: config.directDatabaseUrl ? 'DATABASE_DIRECT_URL' : 'DATABASE_URL',
        notifyUrl: info.url,
        notifyVariable: 'DATABASE_URL',
      },
      // A database slow to accept connections skips the check rather than the start (the listener proves it later).
      { connectMs: Math.min(2_000, config.timeouts.dbConnectMs) },
    );
    if ('heard' in proof) log.debug({ roundTripMs: proof.heard }, 'a NOTIFY through DATABASE_URL reached LISTEN');
    else log.warn({ err: { message: proof.unreachable.message } }, 'could not check at start that LISTEN hears NOTIFY (database not reachable); the cache stays off until the listener has proved it');
  } else {
    const embedded = await startEmbeddedPostgres(config.dataDir, log, { relocatable: config.dataDirDefault });
    // Registered before anything that uses the database, so avvio closes it last.
    app.addHook('onClose', () => embedded.stop());
    info = { url: embedded.url, directUrl: embedded.url, kind: 'embedded' };
  }
  if (config.db.migrateOnStart) {
    await applyMigrations(info.directUrl, {
      info: (obj, msg) => log.info(obj, msg),
      debug: (msg) => log.debug(msg),
    });
  }
  app.decorate('database', info);
}

export default fp(databasePlugin, { name: 'database', fastify: '5.x' });
