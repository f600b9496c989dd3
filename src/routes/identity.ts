import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { listPermissions } from '../auth/permissions.js';
import { effectivePermissions } from '../auth/permissions.js';
import { problemResponses } from '../lib/problem.js';
import { authorize, principalOf, SECURITY } from '../plugins/auth.js';
import { roleSchema, userInfoSchema } from '../schemas/api-keys.js';

export const identityRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/userinfo',
    {
      onRequest: authorize(),
      schema: {
        tags: ['identity'],
        operationId: 'getUserInfo',
        summary: 'Who am I',
        description: 'The calling key: its id, name, prefix, roles and effective permissions. Any valid key may call it.',
        security: SECURITY,
        response: { 200: userInfoSchema.describe('The calling key'), ...problemResponses(401) },
      },
    },
    async (req) => {
      const p = principalOf(req);
      return {
        id: p.id,
        name: p.name,
        keyPrefix: p.keyPrefix,
        roles: p.roles,
        permissions: p.permissionList,
        authMethod: 'api_key' as const,
      };
    },
  );

  app.get(
    '/roles',
    {
      onRequest: authorize('roles.read'),
      schema: {
        tags: ['roles'],
        operationId: 'listRoles',
        summary: 'List roles',
        description: 'The built-in roles with their effective permissions (Administrator holds every permission, including ones added later).',
        security: SECURITY,
        response: { 200: z.array(roleSchema).describe('Every role'), ...problemResponses(401, 403) },
      },
    },
    async () => {
      const roles = await app.services.keys.roles();
      return roles.map((r) => ({ ...r, permissions: listPermissions(effectivePermissions([r.permissions])) as never }));
    },
  );
};
