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
    await db.pause();

    for (const request of [
      { method: 'GET' as const, url: '/api/v1/apikeys', headers: admin.headers },
      { method: 'GET' as const, url: '/api/v1/userinfo', headers: admin.headers },
      { method: 'POST' as const, url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'during-outage' } },
    ]) {
      const res = await app.inject(request);
      expect(res.statusCode, request.url).toBe(503);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.headers['retry-after']).toBe('2');
      expect(res.json().code).toBe('SERVICE_UNAVAILABLE');
      expect(res.body).not.toMatch(/127\.0\.0\.1|prisma|findMany/i);
    }

    await db.start();
    const back = await app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: admin.headers });
    expect(back.statusCode).toBe(200);
    expect(back.json().map((k: { name: string }) => k.name)).not.toContain('during-outage');
    expect(await sql(db.url, "SELECT count(*)::int AS n FROM api_keys WHERE name = 'during-outage'")).toEqual([{ n: 0 }]);
  });
});
