// With the database gone, requests fail closed with 503 (never 500, never a key accepted), and
// everything works again once it is back, without a restart.
import { afterAll, describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';
import { ADMIN, json, seedKey, sql } from './helpers/keys.js';
import { startOwnedEmbedded } from './helpers/postgres-source.js';

let db: Awaited<ReturnType<typeof startOwnedEmbedded>>;
afterAll(async () => db?.stop());

describe('database outage', () => {
  it('authenticated requests and writes answer 503 with Retry-After, then recover', async () => {
    db = await startOwnedEmbedded();
    const app = await buildTestApp({ databaseUrl: db.url, env: { DB_CONNECT_TIMEOUT_MS: '1000' } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    // Verified and cached before the outage.
    expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: admin.headers })).statusCode).toBe(200);
    expect(app.services.cache.stats().entries).toBe(1);
    await db.pause();
    // The key-change listener loses its connection: the cache is emptied and stops filling, so
    // no key is accepted on the strength of what was true before the outage.
    const deadline = Date.now() + 10_000;
    while (app.services.cache.stats().entries > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(app.services.cache.stats().entries).toBe(0);

    for (const request of [
      { method: 'GET' as const, url: '/api/v1/apikeys', headers: admin.headers },
      { method: 'GET' as const, url: '/api/v1/userinfo', headers: admin.headers },
      { method: 'POST' as const, url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'during-outage' } },
    ]) {
      const started = Date.now();
      const res = await app.inject(request);
      // Fails within the connect timeout (1 s here) plus the pool's own bookkeeping: no hang.
      expect(Date.now() - started, request.url).toBeLessThan(6_000);
      expect(res.statusCode, request.url).toBe(503);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.headers['retry-after']).toBe('2');
      expect(res.json().code).toBe('SERVICE_UNAVAILABLE');
      expect(res.body).not.toMatch(/127\.0\.0\.1|prisma|findMany/i);
    }

    const health = await app.inject({ method: 'GET', url: '/api/v1/health' });
    expect(health.statusCode).toBe(503);
    expect(health.headers['content-type']).toBe('application/problem+json');
    expect(health.json()).toMatchObject({ database: 'unavailable', code: 'DATABASE_UNAVAILABLE' });

    await db.start();
    const back = await app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: admin.headers });
    expect(back.statusCode).toBe(200);
    expect(back.json().map((k: { name: string }) => k.name)).not.toContain('during-outage');
    expect(await sql(db.url, "SELECT count(*)::int AS n FROM api_keys WHERE name = 'during-outage'")).toEqual([{ n: 0 }]);
    // Recovered without a restart: health, the same key, writes, and the cache fills again.
    expect((await app.inject({ method: 'GET', url: '/api/v1/health' })).statusCode).toBe(200);
    const after = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'after-outage' } });
    expect(after.statusCode).toBe(201);
    const recovery = Date.now() + 15_000;
    let me = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: admin.headers });
    while (app.services.cache.stats().entries === 0 && Date.now() < recovery) {
      await new Promise((r) => setTimeout(r, 200));
      me = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: admin.headers });
    }
    expect(me.json().id).toBe(admin.id);
    expect(app.services.cache.stats().entries).toBe(1);
  });

  it('a database that stops answering (frozen): requests fail with 503 within DB_QUERY_TIMEOUT_MS, never hang or 500; it recovers', async () => {
    const frozen = await startOwnedEmbedded();
    try {
      const app = await buildTestApp({ databaseUrl: frozen.url, env: { DB_CONNECT_TIMEOUT_MS: '1000', DB_QUERY_TIMEOUT_MS: '1500' } });
      const admin = await seedKey(app, { roleIds: [ADMIN] });
      // Warm pool connections, then freeze the server under them.
      await Promise.all(Array.from({ length: 4 }, () => app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: admin.headers })));
      frozen.freeze('SIGSTOP');
      const requests = [
        { method: 'GET' as const, url: '/api/v1/apikeys', headers: admin.headers },
        { method: 'POST' as const, url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'while-frozen' } },
        { method: 'GET' as const, url: '/api/v1/userinfo', headers: { 'x-api-key': `${admin.secret.slice(0, 16)}${'f'.repeat(48)}` } },
        { method: 'GET' as const, url: '/api/v1/userinfo', headers: { 'x-api-key': 'jim_ak_unknownunknownunknownunknown0000' } },
      ];
      const results = await Promise.all(
        requests.map(async (r) => {
          const started = Date.now();
          const res = await app.inject(r);
          return { url: `${r.method} ${r.url}`, status: res.statusCode, code: res.json().code, ms: Date.now() - started, retryAfter: res.headers['retry-after'] };
        }),
      );
      frozen.freeze('SIGCONT');
      for (const r of results) {
        expect(r, JSON.stringify(r)).toMatchObject({ status: 503, retryAfter: expect.any(String) });
        // Bounded by the query timeout (plus a transaction's wait for a connection): no hang.
        expect(r.ms, r.url).toBeLessThan(15_000);
      }
      const back = await app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: admin.headers });
      expect(back.statusCode).toBe(200);
      await app.close();
    } finally {
      frozen.freeze('SIGCONT');
      await frozen.stop();
    }
  }, 60_000);
});
