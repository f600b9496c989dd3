import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { addCommonErrors, addProblemExamples, optionalBodies, tidyOpenApi } from '../lib/openapi-tidy.js';
import { PRODUCT, VERSION } from '../lib/version.js';
import { addWebhookDocs } from '../webhooks/openapi.js';

export const OPENAPI_INFO = {
  title: PRODUCT,
  version: VERSION,
  description:
    "API key lifecycle server, wire-compatible with JIM's `/api/v1/apikeys` API and `X-API-Key` header. Every route is also served under `/api/` without the version.",
};

/**
 * The explorer's Content-Security-Policy: everything from this origin only. Swagger UI sets
 * element styles through the DOM (allowed) but also injects a few <style> rules, hence
 * 'unsafe-inline' for styles only; no inline script runs.
 */
export const EXPLORER_CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "connect-src 'self'",
  "font-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'",
].join('; ');

/** Security headers of every browser-facing page (/docs, and /console with its own CSP). */
export const EXPLORER_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

async function openapiPlugin(app: FastifyInstance) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: OPENAPI_INFO,
      // Relative: the server that serves the document (the explorer and generated clients use it).
      servers: [{ url: '/', description: 'This server' }],
      components: {
        securitySchemes: {
          ApiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'JIM-style API key' },
          BearerAuth: { type: 'http', scheme: 'bearer', description: 'The same API key as a bearer token' },
        },
      },
      tags: [
        { name: 'apikeys', description: 'The API key lifecycle (JIM-compatible)' },
        { name: 'identity', description: 'The calling key' },
        { name: 'roles', description: 'Roles: built-in, and your own with application permissions (orders.read, orders.*)' },
        { name: 'verify', description: 'Service-to-service: verify the key a caller presented to another service, and stream key changes to its cache' },
        { name: 'audit', description: 'Failed authentications' },
        { name: 'webhooks', description: 'Webhook subscriptions (Standard Webhooks): key events, expiry warnings and idle keys delivered, signed, to your systems' },
        { name: 'health', description: 'Service health' },
      ],
    },
    transform: jsonSchemaTransform,
    transformObject: (input) =>
      addWebhookDocs(addProblemExamples(addCommonErrors(optionalBodies(tidyOpenApi(jsonSchemaTransformObject(input) as Parameters<typeof tidyOpenApi>[0]))))) as never,
  });
  // A scope of its own, so the headers reach every /docs reply, static files included (the
  // plugin's own route hooks do not cover those).
  await app.register(async (docs) => {
    docs.addHook('onRequest', (_req, reply, done) => {
      reply.headers(EXPLORER_HEADERS);
      done();
    });
    await docs.register(swaggerUi, {
      routePrefix: '/docs',
      // No validator badge: it would send the document to validator.swagger.io.
      uiConfig: { validatorUrl: null, deepLinking: true, persistAuthorization: false },
      // The page loads its own scripts and styles only, and talks to this server only.
      staticCSP: EXPLORER_CSP,
    });
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // A browser pointed at the server lands on the explorer.
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/docs', 302));
}

export default fp(openapiPlugin, { name: 'openapi', fastify: '5.x' });
