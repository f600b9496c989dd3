import { PrismaPg } from '@prisma/adapter-pg';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { PrismaClient } from '../generated/prisma/client.js';

declare module 'fastify' {
  interface FastifyInstance {
    prisma: PrismaClient;
  }
}

export function createPrismaClient(url: string, config: Config): PrismaClient {
  const adapter = new PrismaPg({
    connectionString: url,
    max: config.db.poolMax,
    connectionTimeoutMillis: config.timeouts.dbConnectMs,
    idleTimeoutMillis: 30_000,
  });
  // Wait for a pooled connection and run transactions with bounds that fit the request timeout;
  // running out of either is a 503 (see errors.ts), not a hang.
  return new PrismaClient({ adapter, transactionOptions: { maxWait: 10_000, timeout: 15_000 } });
}

async function prismaPlugin(app: FastifyInstance, opts: { config: Config }) {
  const prisma = createPrismaClient(app.database.url, opts.config);
  app.decorate('prisma', prisma);
  app.addHook('onClose', () => prisma.$disconnect());
}

export default fp(prismaPlugin, { name: 'prisma', fastify: '5.x', dependencies: ['database'] });
