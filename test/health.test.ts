import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';
import { startOwnedEmbedded } from './helpers/postgres-source.js';

describe('GET /api/v1/health', () => {
  it('is 200 with the database status, without a key', async () => {
    const app = await buildTestApp();
    const res = await app.inject({ method: 'GET', url: '/api/v1/health' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.json()).toEqual({ status: 'healthy', database: 'ok' });
  });

  it('is served under /api/ as well, with the same answer', async () => {
    const app = await buildTestApp();
    const [v1, alias] = await Promise.all([
      app.inject({ method: 'GET', url: '/api/v1/health' }),
      app.inject({ method: 'GET', url: '/api/health' }),
    ]);
    expect(alias.statusCode).toBe(200);
    expect(alias.json()).toEqual(v1.json());
    expect(alias.headers['content-type']).toBe(v1.headers['content-type']);
  });

  describe('with a database the test owns', () => {
    let db: Awaited<ReturnType<typeof startOwnedEmbedded>>;
    afterAll(async () => db?.stop());

    it('turns 503 when the database stops and recovers without a restart when it returns', async () => {
      db = await startOwnedEmbedded();
      const app = await buildTestApp({ databaseUrl: db.url, env: { DB_HEALTH_TIMEOUT_MS: '1500' } });
      expect((await app.inject({ method: 'GET', url: '/api/v1/health' })).statusCode).toBe(200);

      await db.pause();
      const down = await app.inject({ method: 'GET', url: '/api/v1/health' });
      expect(down.statusCode).toBe(503);
      expect(down.headers['retry-after']).toBe('5');
      expect(down.headers['content-type']).toBe('application/problem+json');
      expect(down.json()).toMatchObject({ status: 503, code: 'DATABASE_UNAVAILABLE', database: 'unavailable' });

      await db.start();
      const up = await app.inject({ method: 'GET', url: '/api/v1/health' });
      expect(up.statusCode).toBe(200);
      expect(up.json()).toEqual({ status: 'healthy', database: 'ok' });
    });
  });

  describe('with a database that accepts connections but never answers', () => {
    const sockets: net.Socket[] = [];
    const blackhole = net.createServer((s) => void sockets.push(s));
    afterAll(async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => blackhole.close(r));
    });

    it('answers 503 after the health timeout instead of hanging', async () => {
      await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
      const { port } = blackhole.address() as net.AddressInfo;
      const app = await buildTestApp({
        databaseUrl: `postgresql://nobody@127.0.0.1:${port}/none`,
        env: { DB_HEALTH_TIMEOUT_MS: '300', DB_MIGRATE_ON_START: 'false' },
      });
      const started = Date.now();
      const res = await app.inject({ method: 'GET', url: '/api/v1/health' });
      const elapsed = Date.now() - started;
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 503, code: 'DATABASE_UNAVAILABLE', database: 'unavailable' });
      // Bounded by DB_HEALTH_TIMEOUT_MS, not by the connection timeout (5 s) or forever.
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2_000);
      expect(sockets.length).toBeGreaterThan(0); // it really tried this database
    });
  });
});
