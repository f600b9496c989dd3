// buildApp(config): the whole server. server.ts and the tests build it the same way.
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyServerOptions, type RouteOptions } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { KeyHasher } from './auth/hasher.js';
import type { Resolver } from './webhooks/address-guard.js';
import type { Config } from './config.js';
import { clientErrorHandler } from './lib/client-error.js';
import { serializerCompiler } from './lib/serializer.js';
import { validatorCompiler } from './lib/validation.js';
import { loggerOptions } from './lib/logger.js';
import databasePlugin from './plugins/database.js';
import errorsPlugin, { handleError } from './plugins/errors.js';
import httpPlugin from './plugins/http.js';
import lifecyclePlugin from './plugins/lifecycle.js';
import metricsPlugin from './plugins/metrics.js';
import consolePlugin from './plugins/console.js';
import openapiPlugin from './plugins/openapi.js';
import prismaPlugin from './plugins/prisma.js';
import rateLimitPlugin from './plugins/rate-limit.js';
import requestAuthPlugin from './plugins/request-auth.js';
import servicesPlugin from './plugins/services.js';
import { benchRoutes } from './routes/bench.js';
import { apiRoutes } from './routes/index.js';

export const BODY_LIMIT_BYTES = 64 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export interface BuildOptions {
  /** Log destination (tests capture it); defaults to stdout. */
  logStream?: Writable;
  /** Replaces the argon2 hasher (tests count its calls). */
  hasher?: KeyHasher;
  /** The policies' "now" (tests move it days ahead); defaults to the system clock. */
  clock?: () => Date;
  /** How webhook hosts resolve (tests point names at chosen addresses); defaults to the system's resolver. */
  resolve?: Resolver;
  /** Told of every route as it is registered (tests check their route tables against it). */
  onRoute?: (route: RouteOptions) => void;
}

export type App = FastifyInstance;

export async function buildApp(config: Config, options: BuildOptions = {}): Promise<App> {
  const connectionsCheckingInterval = config.timeouts.checkingIntervalMs;
  const app = Fastify({
    // HTTPS straight from the server when TLS_CERT_FILE/TLS_KEY_FILE are set (README "TLS").
    // fastify passes only these options to https.createServer, so the interval goes here too.
    ...(config.tls ? { https: { cert: config.tls.cert, key: config.tls.key, connectionsCheckingInterval } } : {}),
    logger: loggerOptions(config, options.logStream) as FastifyServerOptions['logger'],
    bodyLimit: BODY_LIMIT_BYTES,
    requestTimeout: config.timeouts.requestMs,
    connectionTimeout: config.timeouts.connectionMs,
    keepAliveTimeout: config.timeouts.keepAliveMs,
    http: { connectionsCheckingInterval } as never,
    clientErrorHandler,
    // The http plugin answers requests that arrive while closing (as problem+json).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // The database plugin may wait for another instance's migrations; its own steps are bounded.
    pluginTimeout: 0,
    trustProxy: config.trustProxy,
    // Accept a caller's X-Request-Id when it is sane, otherwise mint one; echoed on every reply.
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    frameworkErrors: (err, req, reply) => handleError(err, req, reply),
  }).withTypeProvider<ZodTypeProvider>();

  if (options.onRoute) app.addHook('onRoute', options.onRoute);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  await app.register(httpPlugin, { requestTimeoutMs: config.timeouts.requestMs });
  await app.register(errorsPlugin);
  await app.register(openapiPlugin);
  await app.register(consolePlugin);
  await app.register(databasePlugin, { config });
  await app.register(prismaPlugin, { config });
  await app.register(lifecyclePlugin, { deadlineMs: config.timeouts.shutdownMs });
  await app.register(metricsPlugin, { config });
  await app.register(servicesPlugin, { config, hasher: options.hasher, clock: options.clock, resolve: options.resolve });
  await app.register(rateLimitPlugin, { config });
  await app.register(requestAuthPlugin, { failureDelayMs: config.authFailureDelayMs });
  if (config.benchRoutes) await app.register(benchRoutes, { prefix: '/bench' });

  await app.register(apiRoutes, { prefix: '/api/v1', config });
  await app.register(
    async (alias) => {
      // The unversioned alias serves the same handlers; hidden so operation ids stay unique.
      alias.addHook('onRoute', (route) => {
        route.schema = { ...route.schema, hide: true };
      });
      await alias.register(apiRoutes, { config });
    },
    { prefix: '/api' },
  );

  return app;
}
