import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { actorOf, authorize, SECURITY } from '../plugins/auth.js';
import { problemResponses } from '../lib/problem.js';
import {
  apiKeySchema,
  createBody,
  createdApiKeySchema,
  deleteQuery,
  idParams,
  listQuery,
  patchBody,
  replaceBody,
  rotateBody,
  rotatedApiKeySchema,
} from '../schemas/api-keys.js';
import { nextLink } from '../services/paging.js';

const TAGS = ['apikeys'];
/**
 * RFC 9110: `*`, or a comma-separated list of entity tags (`"3"`, `W/"3"`; obs-text allowed,
 * empty list elements tolerated as the RFC asks of recipients).
 */
const ETAG = '(?:W\\/)?"[\\x21\\x23-\\x7e\\x80-\\xff]*"';
const IF_MATCH = new RegExp(`^(?:\\*|(?:,[ \\t]*)*${ETAG}(?:[ \\t]*,(?:[ \\t]*${ETAG})?)*)$`);
export const ifMatchHeaders = z.object({
  'if-match': z
    .string()
    .trim()
    .max(200, { error: 'must have at most 200 characters', abort: true })
    .regex(IF_MATCH, { error: 'must be * or one or more quoted ETags as the ETag header gives them, e.g. "3"' })
    .optional()
    .describe('Apply only if the key still has this ETag (412 otherwise); a malformed value is a 400'),
});

/**
 * `/api/v1/apikeys` or `/api/apikeys`, whichever route served the request: the route's own
 * template, never the raw URL (which may be percent-encoded, `/api/v1/%61pikeys`, or carry a
 * trailing slash).
 */
export function collectionPath(req: FastifyRequest): string {
  return req.routeOptions.url!.replace(/\/$/, '');
}

export function noStore(reply: FastifyReply) {
  reply.header('cache-control', 'no-store');
}

export const apiKeyRoutes: FastifyPluginAsyncZod = async (app) => {
  const keys = () => app.services.keys;

  app.get(
    '/apikeys',
    {
      onRequest: authorize('apikeys.read'),
      schema: {
        tags: TAGS,
        operationId: 'listApiKeys',
        summary: 'List API keys',
        description:
          'A JSON array ordered by lower(name) in code-point order, then id. Without `limit`, every match (up to 10,000), as JIM clients expect. With `limit`, a page; a `Link: <…>; rel="next"` header points to the next one.',
        security: SECURITY,
        querystring: listQuery,
        response: { 200: z.array(apiKeySchema).describe('The matching keys, in order'), ...problemResponses(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const { items, next } = await keys().list({
        name: q.name,
        isEnabled: q.isEnabled === undefined ? undefined : q.isEnabled === 'true',
        unusedSince: q.unusedSince === undefined ? undefined : new Date(q.unusedSince),
        limit: q.limit,
        cursor: q.cursor,
      });
      if (next) reply.header('link', nextLink(req.url, q, next));
      noStore(reply);
      return items;
    },
  );

  app.get(
    '/apikeys/:id',
    {
      onRequest: authorize('apikeys.read'),
      schema: {
        tags: TAGS,
        operationId: 'getApiKey',
        summary: 'Get one API key',
        description: 'The key object (never its secret or hash), with its ETag.',
        security: SECURITY,
        params: idParams,
        response: { 200: apiKeySchema.describe('The key, with an ETag header'), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (req, reply) => {
      const { key, etag } = await keys().get(req.params.id);
      noStore(reply);
      reply.header('etag', etag);
      return key;
    },
  );

  app.post(
    '/apikeys',
    {
      onRequest: authorize('apikeys.write'),
      schema: {
        tags: TAGS,
        operationId: 'createApiKey',
        summary: 'Create an API key',
        description:
          'Creates a key and returns it with `key`, the full secret: the only response that ever contains it. The caller must hold every permission the new key gets.',
        security: SECURITY,
        body: createBody,
        response: { 201: createdApiKeySchema.describe('Created; Location names the new key'), ...problemResponses(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const { key, secret, etag } = await keys().create(actorOf(req), req.body);
      noStore(reply);
      reply.header('etag', etag).header('location', `${collectionPath(req)}/${key.id}`);
      return reply.code(201).send({ ...key, key: secret });
    },
  );

  app.put(
    '/apikeys/:id',
    {
      onRequest: authorize('apikeys.write'),
      schema: {
        tags: TAGS,
        operationId: 'replaceApiKey',
        summary: 'Replace an API key (Set-JIMApiKey)',
        description:
          'Full replacement, as JIM\'s Set-JIMApiKey sends it after a GET: name, roleIds and isEnabled are required; an absent description or expiresAt becomes null. A past expiresAt expires the key now.',
        security: SECURITY,
        params: idParams,
        headers: ifMatchHeaders,
        body: replaceBody,
        response: { 200: apiKeySchema.describe('The key after the change, with its new ETag'), ...problemResponses(400, 401, 403, 404, 412) },
      },
    },
    async (req, reply) => {
      const { key, etag } = await keys().replace(actorOf(req), req.params.id, req.body, req.headers['if-match']);
      noStore(reply);
      reply.header('etag', etag);
      return key;
    },
  );

  app.patch(
    '/apikeys/:id',
    {
      onRequest: authorize('apikeys.write'),
      schema: {
        tags: TAGS,
        operationId: 'updateApiKey',
        summary: 'Update some fields of an API key',
        description:
          'Absent fields stay unchanged. `expiresAt: null` removes the expiry; `roleIds` replaces all assignments; `isEnabled` enables or disables.',
        security: SECURITY,
        params: idParams,
        headers: ifMatchHeaders,
        body: patchBody,
        response: { 200: apiKeySchema.describe('The key after the change, with its new ETag'), ...problemResponses(400, 401, 403, 404, 412) },
      },
    },
    async (req, reply) => {
      const { key, etag } = await keys().patch(actorOf(req), req.params.id, req.body, req.headers['if-match']);
      noStore(reply);
      reply.header('etag', etag);
      return key;
    },
  );

  app.post(
    '/apikeys/:id/rotate',
    {
      onRequest: authorize('apikeys.write'),
      schema: {
        tags: TAGS,
        operationId: 'rotateApiKey',
        summary: 'Rotate an API key: a new secret, the same id',
        description: [
          'Issues a new secret for the same key (its id, roles, metadata, history and everything else stay) and returns the key with `key`, the new secret: the only response that contains it. The new secret has a new prefix.',
          'The replaced secret keeps working for `gracePeriodSeconds` (0–86,400; default 0, when it stops at once), never past the key\'s own `expiresAt`; `previousKeyPrefix` and `previousKeyExpiresAt` show it meanwhile. Rotating again during a grace period ends that one at once. Once it ends the replaced secret fails like any wrong secret, on every instance and in every consumer cache.',
          'Disabled and expired keys cannot be rotated (409). The caller must hold every permission the key has. Recorded in the change history as `rotate`.',
        ].join('\n\n'),
        security: SECURITY,
        params: idParams,
        headers: ifMatchHeaders,
        body: rotateBody.nullish(), // fastify hands an absent body over as null
        response: {
          201: rotatedApiKeySchema.describe('Rotated; ETag is the key\'s new one'),
          ...problemResponses(400, 401, 403, 404, 409, 412),
        },
      },
    },
    async (req, reply) => {
      const { key, secret, etag } = await keys().rotate(actorOf(req), req.params.id, req.body ?? {}, req.headers['if-match']);
      noStore(reply);
      reply.header('etag', etag).header('location', `${collectionPath(req).replace(/\/:id\/rotate$/, '')}/${key.id}`);
      return reply.code(201).send({ ...key, key: secret });
    },
  );

  app.delete(
    '/apikeys/:id',
    {
      onRequest: authorize('apikeys.write'),
      schema: {
        tags: TAGS,
        operationId: 'deleteApiKey',
        summary: 'Delete an API key',
        description:
          '204 by default. With `Prefer: return=representation`, 200 and the deleted key object as it was (what Remove-JIMApiKey -PassThru shows).',
        security: SECURITY,
        params: idParams,
        querystring: deleteQuery,
        headers: ifMatchHeaders.extend({ prefer: z.string().max(200, { error: 'must have at most 200 characters' }).optional() }),
        response: {
          200: apiKeySchema.describe('The deleted key (with Prefer: return=representation)'),
          204: z.null().describe('Deleted'),
          ...problemResponses(400, 401, 403, 404, 412),
        },
      },
    },
    async (req, reply) => {
      const deleted = await keys().remove(actorOf(req), req.params.id, req.query.changeReason, req.headers['if-match']);
      const prefer = (req.headers.prefer ?? '').split(/[,;]/).map((p) => p.trim().toLowerCase());
      if (prefer.includes('return=representation')) {
        noStore(reply);
        reply.header('preference-applied', 'return=representation');
        return reply.code(200).send(deleted);
      }
      return reply.code(204).send(null);
    },
  );
};
