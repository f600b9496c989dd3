import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses } from '../lib/problem.js';
import { actorOf, authorize, SECURITY } from '../plugins/auth.js';
import {
  createRoleBody,
  deleteRoleQuery,
  patchRoleBody,
  replaceRoleBody,
  roleHistoryEntrySchema,
  roleHistoryQuery,
  roleIdParams,
  roleSchema,
} from '../schemas/roles.js';
import { nextLink } from '../services/paging.js';
import { collectionPath, ifMatchHeaders, noStore } from './api-keys.js';

const TAGS = ['roles'];
const NOT_FOUND: [number, string] = [404, 'No role with this id (ROLE_NOT_FOUND)'];
const CONFLICT: [number, string] = [409, 'A built-in role (ROLE_BUILT_IN), a role keys still hold (ROLE_IN_USE), or a name another role has (ROLE_NAME_TAKEN)'];
const STALE: [number, string] = [412, 'If-Match does not match the role\'s current ETag (PRECONDITION_FAILED)'];
const roleIfMatch = ifMatchHeaders.extend({ 'if-match': ifMatchHeaders.shape['if-match'].describe('Apply only if the role still has this ETag (412 otherwise)') });

export const roleRoutes: FastifyPluginAsyncZod = async (app) => {
  const roles = () => app.services.roles;

  app.get(
    '/roles',
    {
      onRequest: authorize('roles.read'),
      schema: {
        tags: TAGS,
        operationId: 'listRoles',
        summary: 'List roles',
        description: 'Every role, built-in and your own, by id, with the permissions it grants (Administrator holds every permission, including ones added later).',
        security: SECURITY,
        response: { 200: z.array(roleSchema).describe('Every role'), ...problemResponses(401, 403) },
      },
    },
    async (_req, reply) => {
      noStore(reply);
      return roles().list();
    },
  );

  app.get(
    '/roles/:id',
    {
      onRequest: authorize('roles.read'),
      schema: {
        tags: TAGS,
        operationId: 'getRole',
        summary: 'Get one role',
        description: 'The role, with its ETag.',
        security: SECURITY,
        params: roleIdParams,
        response: { 200: roleSchema.describe('The role, with an ETag header'), ...problemResponses(400, 401, 403, NOT_FOUND) },
      },
    },
    async (req, reply) => {
      const { role, etag } = await roles().get(req.params.id);
      noStore(reply);
      reply.header('etag', etag);
      return role;
    },
  );

  app.post(
    '/roles',
    {
      onRequest: authorize('roles.write'),
      schema: {
        tags: TAGS,
        operationId: 'createRole',
        summary: 'Create a role',
        description:
          'A role of your own, with keyward\'s permissions or your application\'s (`orders.read`, `orders.*`). You can only grant permissions your own key holds. Ids start at 100.',
        security: SECURITY,
        body: createRoleBody,
        response: { 201: roleSchema.describe('Created; Location names the new role'), ...problemResponses(400, 401, 403, [409, 'A role with this name exists (ROLE_NAME_TAKEN)']) },
      },
    },
    async (req, reply) => {
      const { role, etag } = await roles().create(actorOf(req), req.body);
      noStore(reply);
      reply.header('etag', etag).header('location', `${collectionPath(req)}/${role.id}`);
      return reply.code(201).send(role);
    },
  );

  app.put(
    '/roles/:id',
    {
      onRequest: authorize('roles.write'),
      schema: {
        tags: TAGS,
        operationId: 'replaceRole',
        summary: 'Replace a role',
        description:
          'Full replacement: name and permissions required, an absent description becomes null. A change to what the role grants reaches every key holding it, on every instance, on its next request. Built-in roles cannot be changed (409).',
        security: SECURITY,
        params: roleIdParams,
        headers: roleIfMatch,
        body: replaceRoleBody,
        response: { 200: roleSchema.describe('The role after the change, with its new ETag'), ...problemResponses(400, 401, 403, NOT_FOUND, CONFLICT, STALE) },
      },
    },
    async (req, reply) => {
      const { role, etag } = await roles().replace(actorOf(req), req.params.id, req.body, req.headers['if-match']);
      noStore(reply);
      reply.header('etag', etag);
      return role;
    },
  );

  app.patch(
    '/roles/:id',
    {
      onRequest: authorize('roles.write'),
      schema: {
        tags: TAGS,
        operationId: 'updateRole',
        summary: 'Update some fields of a role',
        description: 'Absent fields stay unchanged; `permissions` replaces the whole list. Built-in roles cannot be changed (409).',
        security: SECURITY,
        params: roleIdParams,
        headers: roleIfMatch,
        body: patchRoleBody,
        response: { 200: roleSchema.describe('The role after the change, with its new ETag'), ...problemResponses(400, 401, 403, NOT_FOUND, CONFLICT, STALE) },
      },
    },
    async (req, reply) => {
      const { role, etag } = await roles().patch(actorOf(req), req.params.id, req.body, req.headers['if-match']);
      noStore(reply);
      reply.header('etag', etag);
      return role;
    },
  );

  app.delete(
    '/roles/:id',
    {
      onRequest: authorize('roles.write'),
      schema: {
        tags: TAGS,
        operationId: 'deleteRole',
        summary: 'Delete a role',
        description: '204. Refused with 409 `ROLE_IN_USE` while a key holds the role, and `ROLE_BUILT_IN` for a built-in role. Its change history stays readable.',
        security: SECURITY,
        params: roleIdParams,
        querystring: deleteRoleQuery,
        headers: roleIfMatch,
        response: { 204: z.null().describe('Deleted'), ...problemResponses(400, 401, 403, NOT_FOUND, CONFLICT, STALE) },
      },
    },
    async (req, reply) => {
      await roles().remove(actorOf(req), req.params.id, req.query.changeReason, req.headers['if-match']);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/roles/:id/change-history',
    {
      onRequest: authorize('audit.read'),
      schema: {
        tags: TAGS,
        operationId: 'listRoleChangeHistory',
        summary: 'Change history of a role',
        description:
          'Every create, update and delete of the role made through the API, newest first, with actor, reason and a snapshot. Readable after the role is deleted; empty for a built-in role. Paged as the key list is (`limit`, `cursor`, `Link`).',
        security: SECURITY,
        params: roleIdParams,
        querystring: roleHistoryQuery,
        response: { 200: z.array(roleHistoryEntrySchema).describe('Newest first'), ...problemResponses(400, 401, 403, NOT_FOUND) },
      },
    },
    async (req, reply) => {
      const { items, next } = await roles().history(req.params.id, req.query);
      if (next) reply.header('link', nextLink(req.url, req.query, next));
      noStore(reply);
      return items;
    },
  );
};
