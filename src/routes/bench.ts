// The benchmark's routes, registered only with BENCH_ROUTES=true (npm run bench): two routes
// identical but for `authorize`, so the difference in CPU per request is the cost of
// authentication alone; a POST that reads a JSON body and answers the shape verify answers,
// without authenticating or verifying anything (the baseline of POST /apikeys/verify); and the
// process's own counters; and a switch for usage counting. Hidden from the API document.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses } from '../lib/problem.js';
import { authorize } from '../plugins/auth.js';
import { verifyResultSchema } from '../schemas/verify.js';

const VERDICT = {
  valid: true,
  code: 'VALID' as const,
  keyId: '0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b',
  name: 'bench-client',
  roles: [{ id: 101, name: 'bench-orders' }],
  permissions: ['orders.read', 'orders.write'],
  expiresAt: null,
  metadata: {},
};

const reply = z.object({ ok: z.literal(true) });
const handler = async () => ({ ok: true as const });

export const benchRoutes: FastifyPluginAsyncZod = async (app) => {
  const schema = { hide: true, tags: ['bench'], response: { 200: reply.describe('Always ok') } };
  app.get('/open', { schema: { ...schema, description: 'No authentication.' } }, handler);
  app.get('/authed', { onRequest: authorize(), schema: { ...schema, description: 'Any valid key.', response: { ...schema.response, ...problemResponses(401) } } }, handler);
  app.post(
    '/echo',
    { schema: { hide: true, tags: ['bench'], description: 'A JSON body in, a verdict-shaped reply out; nothing checked.', body: z.record(z.string(), z.unknown()), response: { 200: verifyResultSchema } } },
    async () => VERDICT,
  );
  app.post(
    '/usage-counting',
    {
      schema: {
        hide: true,
        tags: ['bench'],
        description: 'Switches per-key usage counting on or off in this process (the bench compares the two on the same server).',
        body: z.strictObject({ enabled: z.boolean() }),
        response: { 200: z.object({ enabled: z.boolean() }).describe('The setting now') },
      },
    },
    async (req) => {
      app.services.usage.setEnabled(req.body.enabled);
      return { enabled: app.services.usage.enabled };
    },
  );
  app.get(
    '/stats',
    {
      schema: {
        hide: true,
        tags: ['bench'],
        description: "This process's CPU time, argon2 work, memory (after a full collection with gc=true) and cache size so far.",
        querystring: z.strictObject({ gc: z.enum(['true', 'false']).optional() }),
        response: {
          200: z
            .object({ cpuUs: z.number(), argon2Runs: z.number(), suspectRuns: z.number(), rssBytes: z.number(), heapUsedBytes: z.number(), cacheEntries: z.number() })
            .describe('Counters'),
        },
      },
    },
    async (req) => {
      if (req.query.gc === 'true') {
        setFlagsFromString('--expose-gc');
        (runInNewContext('gc') as () => void)();
      }
      const cpu = process.cpuUsage();
      const { verifications, cache } = app.services;
      return {
        cpuUs: cpu.user + cpu.system,
        argon2Runs: verifications.runs,
        suspectRuns: verifications.suspectRuns,
        rssBytes: process.memoryUsage.rss(),
        heapUsedBytes: process.memoryUsage().heapUsed,
        cacheEntries: cache.stats().entries,
      };
    },
  );
};
