import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';

export const OPENAPI_INFO = {
  title: 'keyward',
  version: '0.1.0',
  description:
    "API key lifecycle server, wire-compatible with JIM's `/api/v1/apikeys` API and `X-API-Key` header. Every route is also served under `/api/` without the version.",
};

async function openapiPlugin(app: FastifyInstance) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: OPENAPI_INFO,
      components: {
        securitySchemes: {
          ApiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'JIM-style API key' },
          BearerAuth: { type: 'http', scheme: 'bearer', description: 'The same API key as a bearer token' },
        },
      },
      tags: [
        { name: 'apikeys', description: 'The API key lifecycle (JIM-compatible)' },
        { name: 'identity', description: 'The calling key' },
        { name: 'roles', description: 'Built-in roles' },
        { name: 'audit', description: 'Failed authentications' },
        { name: 'health', description: 'Service health' },
      ],
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { validatorUrl: null, deepLinking: true },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

export default fp(openapiPlugin, { name: 'openapi', fastify: '5.x' });
