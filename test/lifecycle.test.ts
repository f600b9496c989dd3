import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { buildTestApp, captureLogs } from './helpers/app.js';

describe('graceful close', () => {
  it('finishes in-flight requests, then runs flush hooks while the database is still open', async () => {
    const app = await buildTestApp({ ready: false });
    const order: string[] = [];
    app.get('/api/v1/slow-probe', async () => {
      await new Promise((r) => setTimeout(r, 300));
      order.push('request finished');
      return { ok: true };
    });
    app.onFlush('probe', async () => {
      const rows = await app.prisma.$queryRaw<Array<{ n: number }>>`SELECT 41 + 1 AS n`;
      order.push(`flushed with database answer ${rows[0].n}`);
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;

    const inflight = fetch(`http://127.0.0.1:${port}/api/v1/slow-probe`);
    await new Promise((r) => setTimeout(r, 50));
    const closed = app.close().then(() => order.push('closed'));

    const res = await inflight;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    await closed;
    expect(order).toEqual(['request finished', 'flushed with database answer 42', 'closed']);
    await expect(fetch(`http://127.0.0.1:${port}/api/v1/health`)).rejects.toThrow();
  });

  it('a failing or slow flush hook does not block shutdown past its deadline', async () => {
    const logs = captureLogs();
    const app = await buildTestApp({ env: { SHUTDOWN_TIMEOUT_MS: '1000', LOG_LEVEL: 'info' }, ready: false, logStream: logs.stream });
    let ranAfterFailure = false;
    app.onFlush('fails', async () => {
      throw new Error('flush failed');
    });
    app.onFlush('hangs', () => new Promise(() => {}));
    app.onFlush('works', async () => {
      ranAfterFailure = true;
    });
    await app.ready();
    const started = Date.now();
    await app.close();
    expect(ranAfterFailure).toBe(true);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900); // it did wait for the hanging hook…
    expect(elapsed).toBeLessThan(5_000); // …but only until its deadline
    const records = logs.records();
    expect(records.find((r) => r.msg === 'flush hook failed')?.hook).toBe('fails');
    expect(records.find((r) => r.msg === 'flush hook missed the shutdown deadline')?.hook).toBe('hangs');
  });
});
