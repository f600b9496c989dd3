// Builds the services from their dependencies and wires their lifecycle (flush at shutdown).
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createAuthenticator, type Authenticator } from '../auth/authenticator.js';
import { createKeyHasher, type KeyHasher } from '../auth/hasher.js';
import type { Config } from '../config.js';
import { createApiKeyService, type ApiKeyService } from '../services/api-keys.js';
import { bootstrapInfrastructureKey } from '../services/bootstrap.js';
import { createLastUsedRecorder, type LastUsedRecorder } from '../services/last-used.js';

export interface Services {
  hasher: KeyHasher;
  keys: ApiKeyService;
  auth: Authenticator;
  lastUsed: LastUsedRecorder;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

async function servicesPlugin(app: FastifyInstance, opts: { config: Config }) {
  const { prisma, log } = app;
  const hasher = createKeyHasher(opts.config.argon2);
  const lastUsed = createLastUsedRecorder({ prisma, log, flushEveryMs: opts.config.lastUsedFlushMs });
  const keys = createApiKeyService({ prisma, hasher, log });
  const auth = createAuthenticator({ prisma, hasher, lastUsed, log });
  app.decorate('services', { hasher, keys, auth, lastUsed });

  lastUsed.start();
  app.onFlush('lastUsedAt', () => lastUsed.stop());

  await bootstrapInfrastructureKey({ secret: opts.config.infrastructureKey, prisma, hasher, keys, log });
}

export default fp(servicesPlugin, { name: 'services', fastify: '5.x', dependencies: ['prisma', 'lifecycle'] });
