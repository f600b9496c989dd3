import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses } from '../lib/problem.js';
import { authorize, SECURITY } from '../plugins/auth.js';
import { nextLink } from '../services/paging.js';
import { compareQuery, compareSchema, historyEntrySchema, historyQuery, idParams, versionParams } from '../schemas/api-keys.js';

const TAGS = ['apikeys'];

export const changeHistoryRoutes: FastifyPluginAsyncZod = async (app) => {
  const history = () => app.services.history;

  app.get(
    '/apikeys/:id/change-history',
    {
      onRequest: authorize('audit.read'),
      schema: {
        tags: TAGS,
        operationId: 'listApiKeyChangeHistory',
        summary: 'Change history of a key',
        description:
          'Every create, update and delete of the key, newest first, with actor, reason and a snapshot. Still readable after the key is deleted. Paged as the key list is (`limit`, `cursor`, `Link`).',
        security: SECURITY,
        params: idParams,
        querystring: historyQuery,
        response: { 200: z.array(historyEntrySchema).describe('Newest first'), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req, reply) => {
      const { items, next } = await history().list(req.params.id, req.query);
      if (next) reply.header('link', nextLink(req.url, req.query, next));
      reply.header('cache-control', 'no-store');
      return items as never;
    },
  );

  app.get(
    '/apikeys/:id/change-history/compare',
    {
      onRequest: authorize('audit.read'),
      schema: {
        tags: TAGS,
        operationId: 'compareApiKeyVersions',
        summary: 'Compare two versions of a key',
        description: 'The snapshot fields that differ between `fromVersion` and `toVersion`.',
        security: SECURITY,
        params: idParams,
        querystring: compareQuery,
        response: { 200: compareSchema.describe('The differences'), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req) => history().compare(req.params.id, req.query.fromVersion, req.query.toVersion),
  );

  app.get(
    '/apikeys/:id/change-history/:version',
    {
      onRequest: authorize('audit.read'),
      schema: {
        tags: TAGS,
        operationId: 'getApiKeyVersion',
        summary: 'One version of a key',
        description: 'The history entry with this version number.',
        security: SECURITY,
        params: versionParams,
        response: { 200: historyEntrySchema.describe('The entry'), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req) => (await history().get(req.params.id, req.params.version)) as never,
  );
};
