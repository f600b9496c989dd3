// Resolves which PostgreSQL to use (DATABASE_URL, else the embedded default), applies pending
// migrations, and stops the embedded server last when the app closes.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { startEmbeddedPostgres } from '../db/embedded-postgres.js';
import { applyMigrations } from '../db/migrate.js';

export interface DatabaseInfo {
  url: string;
  kind: 'external' | 'embedded';
}

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
    const u = new URL(config.databaseUrl);
    log.info(
      { database: 'external', host: u.hostname, port: u.port || '5432', name: u.pathname.slice(1) },
      `using PostgreSQL from DATABASE_URL at ${u.hostname}:${u.port || '5432'}${u.pathname}`,
    );
    info = { url: config.databaseUrl, kind: 'external' };
  } else {
    const embedded = await startEmbeddedPostgres(config.dataDir, log, { relocatable: config.dataDirDefault });
    // Registered before anything that uses the database, so avvio closes it last.
    app.addHook('onClose', () => embedded.stop());
    info = { url: embedded.url, kind: 'embedded' };
  }
  if (config.db.migrateOnStart) {
    await applyMigrations(info.url, {
      info: (obj, msg) => log.info(obj, msg),
      debug: (msg) => log.debug(msg),
    });
  }
  app.decorate('database', info);
}

export default fp(databasePlugin, { name: 'database', fastify: '5.x' });
