import { PrismaPg } from '@prisma/adapter-pg';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import type { Config } from '../config.js';
import { PrismaClient } from '../generated/prisma/client.js';

declare module 'fastify' {
  interface FastifyInstance {
    prisma: PrismaClient;
    /** The pool under Prisma's adapter; read by the metrics (total, idle, waiting). */
    dbPool: pg.Pool;
  }
}

export function createPrismaClient(url: string, config: Config): { prisma: PrismaClient; pool: pg.Pool } {
  // Our own pool, handed to the adapter (which ends it on $disconnect), so its usage can be observed.
  const pool = new pg.Pool({
    connectionString: url,
    max: config.db.poolMax,
    connectionTimeoutMillis: config.timeouts.dbConnectMs,
    idleTimeoutMillis: 30_000,
    // A database that stops answering (frozen, partitioned) would otherwise hold every query,
    // and the request with it, until TCP gives up minutes later.
    query_timeout: config.db.queryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  const adapter = new PrismaPg(pool, { disposeExternalPool: true });
  // Wait for a pooled connection and run transactions with bounds that fit the request timeout;
  // running out of either is a 503 (see errors.ts), not a hang.
  const prisma = new PrismaClient({ adapter, transactionOptions: { maxWait: 10_000, timeout: 15_000 } });
  return { prisma, pool };
}

async function prismaPlugin(app: FastifyInstance, opts: { config: Config }) {
  const { prisma, pool } = createPrismaClient(app.database.url, opts.config);
  app.decorate('prisma', prisma);
  app.decorate('dbPool', pool);
  app.addHook('onClose', () => prisma.$disconnect());
}

export default fp(prismaPlugin, { name: 'prisma', fastify: '5.x', dependencies: ['database'] });
