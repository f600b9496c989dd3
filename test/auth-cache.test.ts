// The verified-key cache: correct answers on the next request, on this instance and another;
// no plaintext in memory; no argon2 for garbage; bounded argon2; survives losing its listener.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { createKeyHasher, type KeyHasher } from '../src/auth/hasher.js';
import { digestKey } from '../src/auth/key-cache.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, json, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

/** The real hasher, counting its calls (and optionally slowed down). */
function countingHasher(delayMs = 0) {
  const real = createKeyHasher({ memoryKib: 1024, timeCost: 1, parallelism: 1 });
  const counts = { hash: 0, verify: 0 };
  const hasher: KeyHasher = {
    hash: (s) => {
      counts.hash++;
      return real.hash(s);
    },
    verify: async (h, s) => {
      counts.verify++;
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      return real.verify(h, s);
    },
    needsRehash: (h) => real.needsRehash(h),
  };
  return { hasher, counts };
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

let dbUrl: string;
beforeAll(async () => {
  dbUrl = (await testDatabase()).url;
});

describe('two instances, one database', () => {
  let a: App;
  let b: App;
  let admin: SeededKey;
  beforeAll(async () => {
    a = await buildTestApp();
    b = await buildTestApp();
    await until(async () => a.services.listener.listening && b.services.listener.listening, 5_000);
    admin = await seedKey(a, { name: 'cache-admin', roleIds: [ADMIN] });
  });

  const status = (app: App, key: SeededKey) => app.inject({ method: 'GET', url: '/api/v1/apikeys?limit=1', headers: key.headers }).then((r) => r.statusCode);

  it('disable, enable, expire, demote and delete reach the same instance at once and the other within 1 s', async () => {
    const key = await seedKey(a, { name: 'shared', roleIds: [READER] });
    expect(await status(a, key)).toBe(200);
    expect(await status(b, key)).toBe(200); // both have it cached now
    const patch = (payload: object) =>
      a.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload });

    const steps: Array<[object | 'delete', number]> = [
      [{ isEnabled: false }, 401],
      [{ isEnabled: true }, 200],
      [{ expiresAt: '2001-01-01T00:00:00Z' }, 401],
      [{ expiresAt: null }, 200],
      [{ roleIds: [] }, 403],
      [{ roleIds: [READER] }, 200],
      ['delete', 401],
    ];
    for (const [change, expected] of steps) {
      const res =
        change === 'delete'
          ? await a.inject({ method: 'DELETE', url: `/api/v1/apikeys/${key.id}`, headers: admin.headers })
          : await patch(change);
      expect(res.statusCode).toBeLessThan(300);
      expect(await status(a, key), `${JSON.stringify(change)} on A`).toBe(expected);
      await until(async () => (await status(b, key)) === expected, 1_000);
    }
  });

  it('after a change, each instance re-reads the row once: no argon2 to learn a key was disabled', async () => {
    const { hasher, counts } = countingHasher();
    const c = await buildTestApp({ hasher });
    await until(async () => c.services.listener.listening, 5_000);
    const key = await seedKey(a, { name: 'no-rehash', roleIds: [READER] });
    expect(await status(c, key)).toBe(200);
    const v = counts.verify;
    await a.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload: { isEnabled: false } });
    await until(async () => (await status(c, key)) === 401, 1_000);
    await a.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload: { isEnabled: true, roleIds: [] } });
    await until(async () => (await status(c, key)) === 403, 1_000);
    expect(counts.verify).toBe(v);
  });

  it('keys:create-style changes through the service on another instance are heard too (NOTIFY in the transaction)', async () => {
    const key = await seedKey(a, { name: 'notified', roleIds: [READER] });
    expect(await status(b, key)).toBe(200);
    // A change that B's process did not make, committed by A's service.
    await a.services.keys.patch({ type: 'system', id: null, name: 'test', permissions: new Set(['*']) }, key.id, { isEnabled: false });
    await until(async () => (await status(b, key)) === 401, 1_000);
  });
});

describe('what the cache holds', () => {
  it('no plaintext key, only digests; a hit needs no argon2 and no database read of the key', async () => {
    const { hasher, counts } = countingHasher();
    const app = await buildTestApp({ hasher });
    await until(async () => app.services.listener.listening, 5_000);
    const key = await seedKey(app, { roleIds: [READER] });
    for (let i = 0; i < 5; i++) {
      expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
    }
    expect(counts.verify).toBe(1);
    const dump = JSON.stringify(app.services.cache.dump(), (_k, v) => (v instanceof Set ? [...v] : v));
    expect(dump).toContain(key.id);
    expect(dump).not.toContain(key.secret);
    expect(dump).not.toContain(key.secret.slice(16));
    expect(dump).not.toContain(key.secret.slice(0, 24));
  });

  it('a cached key whose expiresAt passes is refused, without a change to the row', async () => {
    const app = await buildTestApp();
    await until(async () => app.services.listener.listening, 5_000);
    const key = await seedKey(app, { roleIds: [READER], expiresAt: new Date(Date.now() + 1_500).toISOString() });
    expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
    expect(app.services.cache.stats().entries).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 1_700));
    const res = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('API_KEY_EXPIRED');
  });

  it('a change made by direct SQL (no notification) is seen once the entry is older than the maximum age', async () => {
    const { hasher, counts } = countingHasher();
    const app = await buildTestApp({ hasher, env: { AUTH_CACHE_MAX_AGE_MS: '300' } });
    await until(async () => app.services.listener.listening, 5_000);
    const key = await seedKey(app, { roleIds: [READER] });
    const me = () => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers });
    expect((await me()).statusCode).toBe(200);
    await sql(dbUrl, 'UPDATE api_keys SET is_enabled = false WHERE id = $1', [key.id]);
    expect((await me()).statusCode).toBe(200); // still within the maximum age: served from cache
    await new Promise((r) => setTimeout(r, 350));
    const verifiesBefore = counts.verify;
    const res = await me();
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('API_KEY_DISABLED');
    expect(counts.verify).toBe(verifiesBefore); // the version changed: the row was re-read, no argon2

    // An unchanged key past its maximum age is revalidated by its version alone.
    const other = await seedKey(app, { roleIds: [READER] });
    const call = () => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: other.headers });
    expect((await call()).statusCode).toBe(200);
    const v = counts.verify;
    await new Promise((r) => setTimeout(r, 350));
    expect((await call()).statusCode).toBe(200);
    expect(counts.verify).toBe(v);
  });
});

describe('a secret replaced behind the server\'s back', () => {
  it('the old secret stops working on an instance that cached it (past the maximum age, and after a PATCH); the new one works on both', async () => {
    const env = { AUTH_CACHE_MAX_AGE_MS: '300' };
    const a = await buildTestApp({ env });
    const b = await buildTestApp({ env });
    await until(async () => a.services.listener.listening && b.services.listener.listening, 5_000);
    const admin = await seedKey(a, { roleIds: [ADMIN] });
    const victim = await seedKey(a, { roleIds: [READER] });
    const me = (app: App, secret: string) => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': secret } });
    expect((await me(a, victim.secret)).statusCode).toBe(200); // cached on A

    // Direct SQL: the victim's hash becomes the hash of another secret with the victim's prefix.
    const replacement = `${victim.secret.slice(0, 16)}${'f'.repeat(victim.secret.length - 16)}`;
    const newHash = await a.services.hasher.hash(replacement);
    await sql(dbUrl, 'UPDATE api_keys SET hash = $2 WHERE id = $1', [victim.id, newHash]);

    await new Promise((r) => setTimeout(r, 350)); // past the maximum age
    const old = await me(a, victim.secret);
    expect(old.statusCode).toBe(401);
    expect(old.json().code).toBe('API_KEY_INVALID');
    expect((await me(a, replacement)).statusCode).toBe(200);
    expect((await me(b, victim.secret)).statusCode).toBe(401); // a fresh instance agrees
    expect((await me(b, replacement)).statusCode).toBe(200);

    // Once more, learnt through a PATCH (a notification) rather than the maximum age.
    const third = `${victim.secret.slice(0, 16)}${'e'.repeat(victim.secret.length - 16)}`;
    await sql(dbUrl, 'UPDATE api_keys SET hash = $2 WHERE id = $1', [victim.id, await a.services.hasher.hash(third)]);
    const patched = await b.inject({ method: 'PATCH', url: `/api/v1/apikeys/${victim.id}`, headers: { ...admin.headers, ...json }, payload: { description: 'touched' } });
    expect(patched.statusCode).toBe(200);
    await until(async () => (await me(a, replacement)).statusCode === 401, 2_000);
    expect((await me(a, third)).statusCode).toBe(200);
  });
});

describe('a key keyward rehashed itself', () => {
  it('keeps working after a change, on the instance that rehashed it (no argon2) and on another (one check, no failure budget)', async () => {
    const counting = (memoryKib: number) => {
      const real = createKeyHasher({ memoryKib, timeCost: 1, parallelism: 1 });
      const counts = { verify: 0 };
      const hasher: KeyHasher = { ...real, verify: (h, k) => (counts.verify++, real.verify(h, k)) };
      return { hasher, counts };
    };
    const old = counting(1024);
    const current = counting(2048); // B's parameters differ: it rehashes what it verifies
    const limits = { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PREFIX_MAX: '1', RATE_LIMIT_IP_MAX: '1000' };
    const a = await buildTestApp({ hasher: old.hasher, env: limits });
    const b = await buildTestApp({ hasher: current.hasher });
    await until(async () => a.services.listener.listening && b.services.listener.listening, 5_000);
    const admin = await seedKey(b, { roleIds: [ADMIN] });
    const key = await seedKey(a, { roleIds: [READER] }); // hashed with 1024 KiB
    const me = (app: App, secret = key.secret) => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': secret } });
    const [{ hash: before }] = await sql<{ hash: string }>(dbUrl, 'SELECT hash FROM api_keys WHERE id = $1', [key.id]);
    expect((await me(a)).statusCode).toBe(200); // cached on A, against the 1024 KiB hash
    expect((await me(b)).statusCode).toBe(200); // verified on B, which rehashes it
    await until(async () => (await sql<{ hash: string }>(dbUrl, 'SELECT hash FROM api_keys WHERE id = $1', [key.id]))[0].hash !== before, 5_000);

    // A's failure budget for this prefix is spent by someone else's guess.
    const guess = `${key.secret.slice(0, 16)}${'0'.repeat(key.secret.length - 16)}`;
    expect((await me(a, guess)).statusCode).toBe(401);
    expect((await me(a, guess.replace(/0$/, '1'))).statusCode).toBe(401); // refused unverified
    expect(old.counts.verify).toBe(2); // A's own use, and the first guess

    const patched = await b.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload: { description: 'changed' } });
    expect(patched.statusCode).toBe(200);
    await until(async () => a.services.cache.get(digestKey(key.secret))?.stale !== false, 2_000);

    const aVerifies = old.counts.verify;
    expect((await me(a)).statusCode).toBe(200); // re-checked once against the new hash, not refused by the spent budget
    expect(old.counts.verify - aVerifies).toBe(1);
    expect((await me(a)).statusCode).toBe(200);
    expect(old.counts.verify - aVerifies).toBe(1);

    const bVerifies = current.counts.verify;
    expect((await me(b)).statusCode).toBe(200); // B retagged its own entry when it rehashed: no argon2
    expect(current.counts.verify).toBe(bVerifies);
  });
});

describe('no argon2 for garbage, and a bound on it', () => {
  it('malformed keys and unknown prefixes cost no argon2; a wrong secret costs one, then none for 5 s', async () => {
    const { hasher, counts } = countingHasher();
    const app = await buildTestApp({ hasher });
    await until(async () => app.services.listener.listening, 5_000);
    const real = await seedKey(app, { roleIds: [READER] });
    const send = (key: string) => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': key } });

    for (const garbage of ['x', 'jim_ak_short', `jim_ak_${'z'.repeat(300)}`, `jim_ak_${'0'.repeat(64)}`, `jim_ak_99999999${'f'.repeat(56)}`]) {
      expect((await send(garbage)).json().code).toBe('API_KEY_INVALID');
    }
    expect(counts.verify).toBe(0);

    const wrong = `${real.secret.slice(0, 16)}${'e'.repeat(real.secret.length - 16)}`;
    for (let i = 0; i < 4; i++) expect((await send(wrong)).json().code).toBe('API_KEY_INVALID');
    expect(counts.verify).toBe(1);
  });

  it('when the argon2 bound is full the server answers 503 OVERLOADED with Retry-After; cached keys still pass', async () => {
    const { hasher } = countingHasher(400);
    const app = await buildTestApp({ hasher, env: { ARGON2_MAX_CONCURRENCY: '1', ARGON2_MAX_QUEUE: '1' } });
    await until(async () => app.services.listener.listening, 5_000);
    const real = await seedKey(app, { roleIds: [READER] });
    expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: real.headers })).statusCode).toBe(200); // cached

    const wrongs = Array.from({ length: 4 }, (_, i) => `${real.secret.slice(0, 16)}${String(i).repeat(real.secret.length - 16)}`);
    const flood = wrongs.map((k) => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': k } }));
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const cached = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: real.headers });
    expect(cached.statusCode).toBe(200);
    expect(Date.now() - started).toBeLessThan(300); // not stuck behind the argon2 queue

    const results = await Promise.all(flood);
    const overloaded = results.filter((r) => r.statusCode === 503);
    expect(overloaded.length).toBe(2); // 1 running + 1 queued; the rest refused at once
    for (const r of overloaded) {
      expect(r.headers['content-type']).toBe('application/problem+json');
      expect(r.headers['retry-after']).toBe('1');
      expect(r.json().code).toBe('OVERLOADED');
    }
    expect(results.filter((r) => r.statusCode === 401)).toHaveLength(2);
  });
});

describe('losing the listener connection', () => {
  it('empties the cache, keeps answering correctly from the database, and recovers', async () => {
    const { hasher, counts } = countingHasher();
    const app = await buildTestApp({ hasher });
    await until(async () => app.services.listener.listening, 5_000);
    const key = await seedKey(app, { roleIds: [READER] });
    const me = () => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers });
    expect((await me()).statusCode).toBe(200);
    expect(app.services.cache.stats().entries).toBe(1);

    const pid = await app.services.listener.backendPid();
    expect(pid).toBeGreaterThan(0);
    await sql(dbUrl, 'SELECT pg_terminate_backend($1)', [pid]);
    await until(async () => !app.services.listener.listening, 2_000);
    expect(app.services.cache.stats()).toMatchObject({ entries: 0, fillable: false });

    // While deaf to other instances it verifies every request against the database.
    const v = counts.verify;
    expect((await me()).statusCode).toBe(200);
    expect((await me()).statusCode).toBe(200);
    expect(counts.verify).toBe(v + 2);
    expect(app.services.cache.stats().entries).toBe(0);

    await until(async () => app.services.listener.listening, 5_000);
    expect(await app.services.listener.backendPid()).not.toBe(pid);
    expect((await me()).statusCode).toBe(200);
    const w = counts.verify;
    expect((await me()).statusCode).toBe(200);
    expect(counts.verify).toBe(w); // cached again
  });
});
