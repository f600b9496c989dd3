// The orders API: a small fastify service whose routes keyward guards through @keyward/verify.
//   GET  /orders       needs orders.read
//   POST /orders       needs orders.write
//   GET  /orders-open  the same handler as GET /orders, unprotected (a benchmark's baseline)
//   GET  /health       unprotected
import Fastify, { type FastifyInstance } from 'fastify';
import type { Verifier } from '@keyward/verify';
import { keywardFastify } from '@keyward/verify/fastify';

export interface Order {
  id: number;
  item: string;
  quantity: number;
  createdBy: string | undefined;
  createdAt: string;
}

export async function buildOrdersApi(verifier: Verifier, options: { logger?: boolean } = {}): Promise<FastifyInstance> {
  // Closing ends keep-alive connections at once: a client's idle (or half-opened) socket must not hold a shutdown.
  const app = Fastify({ logger: options.logger ?? false, forceCloseConnections: true });
  await app.register(keywardFastify, { verifier });

  const orders: Order[] = [];
  let nextId = 1;
  const list = () => ({ orders });

  app.get('/health', async () => ({ status: 'ok', keyward: { live: verifier.stats().live } }));
  app.get('/orders', { config: { keyward: { requiredPermissions: ['orders.read'] } } }, async (request) => ({
    ...list(),
    caller: { keyId: request.keyward?.keyId, name: request.keyward?.name },
  }));
  app.get('/orders-open', async () => ({ ...list(), caller: null }));
  app.post<{ Body: { item?: unknown; quantity?: unknown } }>('/orders', { config: { keyward: { requiredPermissions: ['orders.write'] } } }, async (request, reply) => {
    const { item, quantity = 1 } = request.body ?? {};
    if (typeof item !== 'string' || item === '' || !Number.isInteger(quantity) || (quantity as number) < 1) {
      return reply
        .code(400)
        .header('content-type', 'application/problem+json; charset=utf-8')
        .send(JSON.stringify({ type: 'about:blank', title: 'Bad Request', status: 400, detail: 'Send {"item": string, "quantity": positive integer}.', code: 'VALIDATION_FAILED' }));
    }
    const order: Order = { id: nextId++, item, quantity: quantity as number, createdBy: request.keyward?.keyId, createdAt: new Date().toISOString() };
    orders.push(order);
    return reply.code(201).send(order);
  });
  return app;
}
