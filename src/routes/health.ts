import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { buildProblem, PROBLEM_CONTENT_TYPE, problemResponses, problemSchema, sendProblem } from '../lib/problem.js';
import { PRODUCT, VERSION } from '../lib/version.js';

const healthSchema = z
  .object({ status: z.literal('healthy'), database: z.literal('ok') })
  .meta({ id: 'Health' });

const unhealthySchema = problemSchema
  .extend({ database: z.literal('unavailable') })
  .meta({ id: 'Unhealthy', description: 'Problem details with the database state' });

const versionSchema = z
  .object({ product: z.literal(PRODUCT), version: z.string().describe('The server\'s version (semver)') })
  .meta({ id: 'ServerVersion', examples: [{ product: PRODUCT, version: VERSION }] });

export const healthRoutes: FastifyPluginAsyncZod<{ dbHealthMs: number }> = async (app, opts) => {
  app.get(
    '/health/version',
    {
      schema: {
        tags: ['health'],
        operationId: 'getVersion',
        summary: 'Product and version',
        description: 'Anonymous; what `Connect-JIM` reads after `/health` (it shows `version`). Touches no database.',
        security: [],
        response: {
          200: versionSchema.describe('The server\'s product name and version'),
          503: { ...problemResponses(503)[503], description: 'The server is shutting down (SHUTTING_DOWN)' },
        },
      },
    },
    async (_req, reply) => {
      reply.header('cache-control', 'no-store');
      return { product: PRODUCT, version: VERSION };
    },
  );

  app.get(
    '/health/live',
    {
      schema: {
        tags: ['health'],
        operationId: 'getLiveness',
        summary: 'Liveness (no database check)',
        description: 'Anonymous. 200 while the process serves HTTP; touches nothing else (a liveness probe, and the benchmark baseline).',
        security: [],
        response: {
          200: z.object({ status: z.literal('alive') }).meta({ id: 'Liveness' }).describe('The process is serving'),
          503: { ...problemResponses(503)[503], description: 'The server is shutting down (SHUTTING_DOWN)' },
        },
      },
    },
    async () => ({ status: 'alive' as const }),
  );

  app.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        operationId: 'getHealth',
        summary: 'Liveness and database health',
        security: [],
        description:
          'Anonymous. 200 when the database answers within the health timeout; otherwise 503 application/problem+json (code DATABASE_UNAVAILABLE, `database: "unavailable"`) with Retry-After.',
        response: {
          200: healthSchema.describe('The server and its database are up'),
          503: {
            description: 'The database did not answer in time (DATABASE_UNAVAILABLE)',
            content: { [PROBLEM_CONTENT_TYPE]: { schema: unhealthySchema } },
          },
        },
      },
    },
    async (req, reply) => {
      const ok = await app.services.health.databaseAnswers(opts.dbHealthMs);
      reply.header('cache-control', 'no-store');
      if (ok) return { status: 'healthy' as const, database: 'ok' as const };
      req.log.warn('health check: database did not answer');
      const problem = buildProblem('DATABASE_UNAVAILABLE', undefined, req);
      return sendProblem(reply, { ...problem, database: 'unavailable' } as typeof problem);
    },
  );
};
