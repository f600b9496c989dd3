// lastUsedAt / lastUsedFromIp: throttled to one write per key per 30 s, batched, flushed at
// shutdown, never touching updatedAt or the version, safe with several instances.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createLastUsedRecorder } from '../src/services/last-used.js';
import { createKeyStore } from '../src/store/api-keys.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { READER, seedKey, sql } from './helpers/keys.js';

const row = async (id: string) =>
  (
    await sql<{ last_used_at: Date | null; last_used_from_ip: string | null; updated_at: Date; version: number }>(
      (await testDatabase()).url,
      'SELECT last_used_at, last_used_from_ip, updated_at, version FROM api_keys WHERE id = $1',
      [id],
    )
  )[0];

describe('lastUsedAt', () => {
  it('is recorded off the request path, with the client IP, without touching updatedAt or version', async () => {
    const app = await buildTestApp({ env: { LAST_USED_FLUSH_MS: '600000' } });
    const key = await seedKey(app, { roleIds: [READER] });
    const before = await row(key.id);
    const res = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers, remoteAddress: '203.0.113.7' });
    expect(res.statusCode).toBe(200);
    expect((await row(key.id)).last_used_at).toBeNull(); // not written by the request itself
    await app.services.lastUsed.flush();
    const after = await row(key.id);
    expect(after.last_used_at).toBeInstanceOf(Date);
    expect(after.last_used_from_ip).toBe('203.0.113.7');
    expect(after.updated_at).toEqual(before.updated_at);
    expect(after.version).toBe(before.version);
    const view = await app.inject({ method: 'GET', url: `/api/v1/apikeys/${key.id}`, headers: key.headers });
    expect(view.json()).toMatchObject({ lastUsedAt: after.last_used_at!.toISOString(), lastUsedFromIp: '203.0.113.7' });
  });

  it('holds one entry per key while the database keeps the rows locked, and writes it once they are free', async () => {
    const app = await buildTestApp({ env: { LAST_USED_FLUSH_MS: '100', DB_QUERY_TIMEOUT_MS: '300' } });
    const keys = await Promise.all(Array.from({ length: 5 }, () => seedKey(app, { roleIds: [READER] })));
    const url = (await testDatabase()).url;
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT id FROM api_keys WHERE id = ANY($1::uuid[]) FOR UPDATE', [keys.map((k) => k.id)]);
    let peak = 0;
    for (let round = 0; round < 20; round++) {
      for (const k of keys) await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: k.headers }); // cached: no row read
      peak = Math.max(peak, app.services.lastUsed.pending);
      await new Promise((r) => setTimeout(r, 60));
    }
    expect(peak).toBeLessThanOrEqual(keys.length);
    expect((await sql(url, 'SELECT count(*)::int AS n FROM api_keys WHERE id = ANY($1::uuid[]) AND last_used_at IS NOT NULL', [keys.map((k) => k.id)]))[0].n).toBe(0);
    await locker.query('ROLLBACK');
    await locker.end();
    await app.services.lastUsed.flush();
    await app.services.lastUsed.flush();
    for (const k of keys) expect((await row(k.id)).last_used_at).toBeInstanceOf(Date);
  });

  it('is flushed when the server shuts down', async () => {
    const app = await buildTestApp({ env: { LAST_USED_FLUSH_MS: '600000' } });
    const key = await seedKey(app, { roleIds: [READER] });
    await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers });
    expect((await row(key.id)).last_used_at).toBeNull();
    await app.close();
    expect((await row(key.id)).last_used_at).toBeInstanceOf(Date);
  });

  it('is written at most once per key per 30 s, by one instance or several', async () => {
    const app = await buildTestApp();
    const key = await seedKey(app, { roleIds: [READER] });
    let clock = new Date('2030-01-01T00:00:00Z');
    const now = () => clock;
    const recorder = (name: string) => createLastUsedRecorder({ keys: createKeyStore(app.prisma), log: app.log.child({ name }), flushEveryMs: 60_000, now });
    const a = recorder('a');
    const b = recorder('b');

    a.touch(key.id, '10.0.0.1');
    await a.flush();
    expect((await row(key.id)).last_used_at).toEqual(clock);

    clock = new Date('2030-01-01T00:00:10Z');
    a.touch(key.id, '10.0.0.2'); // throttled in memory
    b.touch(key.id, '10.0.0.3'); // another instance: throttled by the conditional UPDATE
    await Promise.all([a.flush(), b.flush()]);
    expect(await row(key.id)).toMatchObject({ last_used_at: new Date('2030-01-01T00:00:00Z'), last_used_from_ip: '10.0.0.1' });

    clock = new Date('2030-01-01T00:00:31Z');
    b.touch(key.id, '10.0.0.4'); // b queued at :10, so it waits until :40 before queuing again
    await b.flush();
    expect((await row(key.id)).last_used_from_ip).toBe('10.0.0.1');
    const c = recorder('c');
    c.touch(key.id, '10.0.0.5'); // a fresh instance: more than 30 s after the stored use
    await c.flush();
    expect(await row(key.id)).toMatchObject({ last_used_at: clock, last_used_from_ip: '10.0.0.5' });
  });
});

describe('rehashing', () => {
  it('a key hashed with other parameters is rehashed on its next use, without a version change', async () => {
    const old = await buildTestApp({ env: { ARGON2_MEMORY_KIB: '2048' } });
    const key = await seedKey(old, { roleIds: [READER] });
    const { url } = await testDatabase();
    const before = (await sql<{ hash: string; version: number }>(url, 'SELECT hash, version FROM api_keys WHERE id = $1', [key.id]))[0];
    expect(before.hash).toMatch(/\$m=2048,/);
    const app = await buildTestApp({ env: { ARGON2_MEMORY_KIB: '1024' } });
    expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
    let after = before;
    for (let i = 0; i < 100 && after.hash === before.hash; i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = (await sql<{ hash: string; version: number }>(url, 'SELECT hash, version FROM api_keys WHERE id = $1', [key.id]))[0];
    }
    expect(after.hash).toMatch(/\$m=1024,/);
    expect(after.version).toBe(before.version);
    // The new hash still verifies.
    const fresh = await buildTestApp({ env: { ARGON2_MEMORY_KIB: '1024' } });
    expect((await fresh.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
  });
});
