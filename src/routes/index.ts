import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Config } from '../config.js';
import { apiKeyRoutes } from './api-keys.js';
import { changeHistoryRoutes } from './change-history.js';
import { healthRoutes } from './health.js';
import { identityRoutes } from './identity.js';
import { revokeRoutes } from './revoke.js';
import { roleRoutes } from './roles.js';
import { securityEventRoutes } from './security-events.js';
import { verifyRoutes } from './verify.js';
import { usageRoutes } from '../usage/routes.js';
import { webhookRoutes } from '../webhooks/routes.js';

/** Every API route; mounted at /api/v1 and again, hidden from OpenAPI, at /api. */
export const apiRoutes: FastifyPluginAsyncZod<{ config: Config }> = async (app, { config }) => {
  await app.register(healthRoutes, { dbHealthMs: config.timeouts.dbHealthMs });
  await app.register(identityRoutes);
  await app.register(roleRoutes);
  await app.register(verifyRoutes); // before /apikeys/:id: its paths are static
  await app.register(revokeRoutes, { failureDelayMs: config.authFailureDelayMs });
  await app.register(apiKeyRoutes);
  await app.register(changeHistoryRoutes);
  await app.register(securityEventRoutes);
  await app.register(usageRoutes);
  await app.register(webhookRoutes);
};
