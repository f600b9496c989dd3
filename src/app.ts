// buildApp(config): the whole server. server.ts and the tests build it the same way.
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import {
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import secureJsonParse from 'secure-json-parse';
import type { Config } from './config.js';
import { AppError } from './lib/errors.js';
import { loggerOptions } from './lib/logger.js';
import databasePlugin from './plugins/database.js';
import errorsPlugin, { handleError } from './plugins/errors.js';
import lifecyclePlugin from './plugins/lifecycle.js';
import openapiPlugin from './plugins/openapi.js';
import prismaPlugin from './plugins/prisma.js';
import servicesPlugin from './plugins/services.js';
import { apiRoutes } from './routes/index.js';

export const BODY_LIMIT_BYTES = 64 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export interface BuildOptions {
  /** Log destination (tests capture it); defaults to stdout. */
  logStream?: Writable;
}

export type App = FastifyInstance;

export async function buildApp(config: Config, options: BuildOptions = {}): Promise<App> {
  const app = Fastify({
    logger: loggerOptions(config, options.logStream) as FastifyServerOptions['logger'],
    bodyLimit: BODY_LIMIT_BYTES,
    requestTimeout: config.timeouts.requestMs,
    connectionTimeout: config.timeouts.connectionMs,
    keepAliveTimeout: config.timeouts.keepAliveMs,
    // Stop new requests with 503 while closing; in-flight ones finish.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
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

  // JSON only: fastify's built-in text/plain parser would hand handlers a string body.
  app.removeContentTypeParser('text/plain');
  // An empty body with a JSON content type is "no body" (clients such as PowerShell send the
  // header on DELETE too); routes that need a body then fail validation with a clear message.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, secureJsonParse(text, { protoAction: 'error', constructorAction: 'error' }));
    } catch (err) {
      done(
        /prototype/.test((err as Error).message)
          ? new AppError(400, 'BAD_REQUEST', 'The body must not contain __proto__ or constructor.prototype keys.')
          : new AppError(400, 'MALFORMED_JSON', 'The request body is not valid JSON.'),
        undefined,
      );
    }
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  // While shutting down, a keep-alive connection would outlive its last response and hold
  // close() until the keep-alive timeout: tell in-flight clients to hang up after this reply.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('connection', 'close');
  });

  await app.register(errorsPlugin);
  await app.register(openapiPlugin);
  await app.register(databasePlugin, { config });
  await app.register(prismaPlugin, { config });
  await app.register(lifecyclePlugin, { deadlineMs: config.timeouts.shutdownMs });
  await app.register(servicesPlugin, { config });
  app.decorateRequest('principal', null);

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
