// Per-key usage over time and the busiest keys (audit.read). Counts are gathered in memory on
// every instance and written every USAGE_FLUSH_MS: a read shows this instance's counts at once,
// other instances' after their next write. README "Usage".
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problemResponses } from '../lib/problem.js';
import { authorize, SECURITY } from '../plugins/auth.js';
import { idParams } from '../schemas/api-keys.js';
import { keyUsageSchema, topQuery, topUsageSchema, usageQuery } from './schemas.js';

const TAGS = ['audit'];

export const usageRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/apikeys/:id/usage',
    {
      onRequest: authorize('audit.read'),
      schema: {
        tags: TAGS,
        operationId: 'getApiKeyUsage',
        summary: 'Usage of a key over time',
        description: [
          "The key's authentications (requests to keyward) and verifications (POST /apikeys/verify) per bucket and outcome, every bucket of the range included.",
          'Minutes are kept 48 hours (USAGE_MINUTES_KEPT), then rolled up into hours; hours are kept 90 days (USAGE_HOURS_KEPT), then rolled up into days (UTC); everything older than USAGE_RETENTION_DAYS is gone. A rolled-up count lands in the bucket holding its start: asking for minutes of a period only hours are kept for puts each hour in its first minute.',
          'Requests whose secret did not verify (a wrong key) are not any key\'s use: they are security events.',
        ].join('\n\n'),
        security: SECURITY,
        params: idParams,
        querystring: usageQuery,
        response: { 200: keyUsageSchema.describe('Buckets, oldest first'), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      return app.services.usageReports.forKey(req.params.id, req.query);
    },
  );

  app.get(
    '/usage/top',
    {
      onRequest: authorize('audit.read'),
      schema: {
        tags: TAGS,
        operationId: 'listBusiestApiKeys',
        summary: 'The busiest keys',
        description: 'Keys by their number of uses (every outcome) in the range, busiest first. Counted per stored bucket by its start (see the key usage route).',
        security: SECURITY,
        querystring: topQuery,
        response: { 200: topUsageSchema.describe('Busiest first'), ...problemResponses(400, 401, 403) },
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      return app.services.usageReports.top(req.query);
    },
  );
};
