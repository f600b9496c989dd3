// GET /metrics (Prometheus text). Off unless METRICS_ENABLED=true; then either on the API port
// behind the metrics.read permission, or, with METRICS_PORT, on a listener of its own that
// serves nothing else and needs no key (bind it to an internal address).
import { createServer, type Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { z } from 'zod';
import type { Config } from '../config.js';
import { clientErrorHandler } from '../lib/client-error.js';
import { createMetrics, NO_METRICS, type Metrics } from '../lib/metrics.js';
import type { ErrorCode } from '../lib/errors.js';
import { buildProblem, problemResponses, sendProblem } from '../lib/problem.js';
import { authorize, SECURITY } from './auth.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

const UNMATCHED = '(unmatched)';

async function metricsPlugin(app: FastifyInstance, opts: { config: Config }) {
  const { enabled, port, host } = opts.config.metrics;
  if (!enabled) {
    app.decorate('metrics', NO_METRICS);
    // Someone looking for them learns how to turn them on (no key needed to learn that).
    app.get('/metrics', { schema: { hide: true } }, async (req, reply) =>
      sendProblem(
        reply,
        buildProblem('NOT_FOUND', 'Metrics are off: start the server with METRICS_ENABLED=true (and optionally METRICS_PORT for a listener of their own).', req),
      ),
    );
    return;
  }
  const metrics = createMetrics();
  const registry = metrics.registry!;
  app.decorate('metrics', metrics);

  app.addHook('onResponse', (req, reply, done) => {
    // The route template, never the raw URL: ids in paths would make a series per key.
    metrics.request(req.method, req.routeOptions.url ?? UNMATCHED, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  app.addHook('onReady', async () => {
    const { cache, verifications, listener, usage } = app.services;
    const pool = app.dbPool;
    metrics.observe({
      cache: () => cache.stats(),
      argon2: () => ({ running: verifications.running, waiting: verifications.waiting }),
      pool: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max: pool.options.max ?? 10 }),
      listener: () => listener.stats(),
      usage: () => ({ pending: usage.pending, dropped: usage.dropped }),
    });
  });

  if (port !== null) {
    // The API port has none: say where they are.
    app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
      const address = app.metricsAddress?.();
      const where = address && typeof address === 'object' ? address.port : port;
      return sendProblem(reply, buildProblem('NOT_FOUND', `Metrics are served on their own port (${where}, METRICS_PORT), not on this one.`, req));
    });
  }

  if (port === null) {
    app.get(
      '/metrics',
      {
        onRequest: authorize('metrics.read'),
        schema: {
          hide: true, // operational, not part of the public API
          tags: ['operations'],
          summary: 'Prometheus metrics',
          security: SECURITY,
          response: {
            200: z.string().describe('Prometheus text exposition format'),
            ...problemResponses(401, 403, 429),
          },
        },
      },
      async (_req, reply) => {
        reply.type(registry.contentType);
        return registry.metrics();
      },
    );
    return;
  }

  let server: Server | undefined;
  app.addHook('onReady', async () => {
    const { timeouts } = opts.config;
    const limits = {
      requestTimeout: timeouts.requestMs,
      headersTimeout: Math.min(timeouts.requestMs, 60_000),
      keepAliveTimeout: timeouts.keepAliveMs,
      connectionsCheckingInterval: timeouts.checkingIntervalMs,
    };
    server = createServer(limits, (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const reply = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers }).end(req.method === 'HEAD' ? undefined : body);
      };
      const problem = (code: ErrorCode, detail: string, headers?: Record<string, string>) => {
        const body = buildProblem(code, detail);
        reply(body.status, 'application/problem+json', JSON.stringify(body), headers);
      };
      if (path !== '/metrics') return problem('NOT_FOUND', 'Only /metrics is served on this port.');
      if (req.method !== 'GET' && req.method !== 'HEAD') return problem('METHOD_NOT_ALLOWED', 'Use GET.', { allow: 'GET, HEAD' });
      registry.metrics().then(
        (text) => reply(200, registry.contentType, text),
        (err: unknown) => {
          app.log.error({ err }, 'collecting metrics failed');
          problem('INTERNAL_ERROR', 'Collecting the metrics failed.');
        },
      );
    });
    // The API listener's protections: problem+json for unparsable requests, the same timeouts.
    server.on('clientError', clientErrorHandler);
    server.timeout = timeouts.connectionMs;
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen({ port, host }, () => {
        server!.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => app.log.error({ err }, 'metrics listener error'));
    const address = server.address();
    app.log.info({ address }, 'metrics listener started');
  });
  app.addHook('onClose', async () => {
    if (!server?.listening) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server!.close(() => resolve()));
  });
  app.decorate('metricsAddress', () => server?.address() ?? null);
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The separate metrics listener's address, when METRICS_PORT is set and it is listening. */
    metricsAddress?: () => ReturnType<Server['address']>;
  }
}

export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x', dependencies: ['prisma'] });
