import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';

const healthSchema = z
  .object({
    status: z.enum(['healthy', 'unhealthy']),
    database: z.enum(['ok', 'unavailable']),
  })
  .meta({ id: 'Health' });

export const healthRoutes: FastifyPluginAsyncZod<{ dbHealthMs: number }> = async (app, opts) => {
  app.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        operationId: 'getHealth',
        summary: 'Liveness and database health',
        description:
          'Anonymous. 200 when the database answers within the health timeout, 503 otherwise (same body shape, so monitors can parse both).',
        response: {
          200: healthSchema.describe('The server and its database are up'),
          503: healthSchema.describe('The database did not answer in time'),
        },
      },
    },
    async (req, reply) => {
      const ok = await pingDatabase(() => app.prisma.$queryRaw`SELECT 1`, opts.dbHealthMs);
      reply.header('cache-control', 'no-store');
      if (ok) return { status: 'healthy' as const, database: 'ok' as const };
      req.log.warn('health check: database did not answer');
      return reply.code(503).header('retry-after', '5').send({ status: 'unhealthy', database: 'unavailable' });
    },
  );
};

async function pingDatabase(probe: () => Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([probe().then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
