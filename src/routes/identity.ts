import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problemResponses } from '../lib/problem.js';
import { authorize, principalOf, SECURITY } from '../plugins/auth.js';
import { userInfoSchema } from '../schemas/api-keys.js';

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
};
