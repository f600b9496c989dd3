// Flush hooks: work that must reach the database before it closes (batched writes, audit
// buffers). They run after in-flight requests have finished and before Prisma disconnects.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

export type FlushHook = { name: string; flush: () => Promise<void> };

declare module 'fastify' {
  interface FastifyInstance {
    onFlush(name: string, flush: () => Promise<void>): void;
  }
}

async function lifecyclePlugin(app: FastifyInstance, opts: { deadlineMs: number }) {
  const hooks: FlushHook[] = [];
  app.decorate('onFlush', (name: string, flush: () => Promise<void>) => {
    hooks.push({ name, flush });
  });
  // Registered after the prisma plugin, so avvio (closing in reverse order) runs it first.
  app.addHook('onClose', async () => {
    await Promise.all(
      hooks.map(async ({ name, flush }) => {
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), opts.deadlineMs);
        });
        try {
          const outcome = await Promise.race([flush().then(() => 'ok' as const), deadline]);
          if (outcome === 'timeout') app.log.error({ hook: name }, 'flush hook missed the shutdown deadline');
        } catch (err) {
          app.log.error({ err, hook: name }, 'flush hook failed');
        } finally {
          clearTimeout(timer);
        }
      }),
    );
  });
}

export default fp(lifecyclePlugin, { name: 'lifecycle', fastify: '5.x', dependencies: ['prisma'] });
