// Rate limits: per key; per client address for requests without a valid key, never refusing a
// key that verifies; per real key prefix for wrong secrets (checked before argon2); the
// infrastructure key exempt; X-Forwarded-For only through trusted proxies; one budget across
// instances through Redis.
import { randomBytes, randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp } from './helpers/app.js';
import { countingHasher, redisAnswers } from './helpers/auth-load.js';
import { READER, seedKey } from './helpers/keys.js';

const LIMITS = { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_KEY_MAX: '5', RATE_LIMIT_IP_MAX: '3', RATE_LIMIT_PREFIX_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' };
const addr = () => `10.${randomInt(1, 250)}.${randomInt(1, 250)}.${randomInt(1, 250)}`;
const me = (app: App, headers: Record<string, string>, remoteAddress: string) =>
  app.inject({ method: 'GET', url: '/api/v1/userinfo', headers, remoteAddress });

function expect429(res: Awaited<ReturnType<typeof me>>) {
  expect(res.statusCode).toBe(429);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.json().code).toBe('RATE_LIMITED');
  expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  expect(res.headers['ratelimit-limit']).toBeDefined();
  expect(res.headers['ratelimit-remaining']).toBe('0');
  expect(Number(res.headers['ratelimit-reset'])).toBeGreaterThan(0);
}

/** 40 concurrent wrong secrets for one real prefix, each from its own address: argon2 runs at most the prefix budget (3). */
async function expectBurstBounded(env: Record<string, string>) {
  const { hasher, verifies } = countingHasher();
  const app = await buildTestApp({ env: { ...LIMITS, RATE_LIMIT_IP_MAX: '1000', ARGON2_MAX_CONCURRENCY: '4', ARGON2_MAX_QUEUE: '64', ...env }, hasher });
  const real = await seedKey(app, { roleIds: [READER] });
  const before = verifies();
  const results = await Promise.all(
    Array.from({ length: 40 }, () => me(app, { 'x-api-key': `${real.secret.slice(0, 16)}${randomBytes(28).toString('hex')}` }, addr())),
  );
  expect(verifies() - before).toBeLessThanOrEqual(3);
  // Refused with or without argon2, every one reads the same: a wrong secret (each address has budget left).
  expect(results.map((r) => `${r.statusCode} ${r.json().code}`)).toEqual(Array(40).fill('401 API_KEY_INVALID'));
}

describe('rate limits', () => {
  it('per key: the budget, its headers, then 429; another key has its own budget', async () => {
    const app = await buildTestApp({ env: LIMITS });
    const a = await seedKey(app, { roleIds: [READER] });
    const b = await seedKey(app, { roleIds: [READER] });
    const ip = addr();
    for (let i = 0; i < 5; i++) {
      const res = await me(app, a.headers, ip);
      expect(res.statusCode).toBe(200);
      // The budget's headers once half of it is used (the third request of five), not before.
      expect(res.headers['ratelimit-limit']).toBe(i < 2 ? undefined : '5');
      expect(res.headers['ratelimit-remaining']).toBe(i < 2 ? undefined : String(4 - i));
    }
    expect429(await me(app, a.headers, ip));
    expect((await me(app, b.headers, ip)).statusCode).toBe(200);
  });

  it('per address, requests without a valid key: 401 until the budget is spent, then 429; a valid key from there still works', async () => {
    const app = await buildTestApp({ env: LIMITS });
    const real = await seedKey(app, { roleIds: [READER] });
    const ip = addr();
    const unknown = () => ({ 'x-api-key': `jim_ak_${randomBytes(32).toString('hex')}` });
    for (let i = 0; i < 3; i++) expect((await me(app, unknown(), ip)).statusCode).toBe(401);
    expect429(await me(app, unknown(), ip));
    expect(await me(app, {}, ip)).toMatchObject({ statusCode: 429 });
    expect((await me(app, real.headers, ip)).statusCode).toBe(200); // first use: verified, never refused by the address
    expect((await me(app, unknown(), addr())).statusCode).toBe(401); // another address has its own budget
  });

  it('per prefix, wrong secrets: 401 until the prefix budget is spent, then the same 401 without argon2; other keys unaffected', async () => {
    const { hasher, verifies } = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, RATE_LIMIT_IP_MAX: '1000' }, hasher });
    const target = await seedKey(app, { roleIds: [READER] });
    const other = await seedKey(app, { roleIds: [READER] });
    const wrong = () => ({ 'x-api-key': `${target.secret.slice(0, 16)}${randomBytes(28).toString('hex')}` });
    const checked = [];
    for (let i = 0; i < 3; i++) checked.push(await me(app, wrong(), addr())); // each from a new address
    expect(checked.map((r) => r.statusCode)).toEqual([401, 401, 401]);
    const verified = checked[0];
    const before = verifies();
    const limited = await me(app, wrong(), addr());
    // Nothing tells the refusal from a wrong secret that was checked: a guesser learns nothing.
    expect(limited.statusCode).toBe(401);
    const { requestId: _r, timestamp: _t, ...body } = limited.json();
    const { requestId: _r2, timestamp: _t2, ...checkedBody } = verified.json();
    expect(body).toEqual(checkedBody);
    expect(limited.headers['www-authenticate']).toBe(verified.headers['www-authenticate']);
    expect(verifies()).toBe(before); // refused before any argon2 work
    expect((await me(app, other.headers, addr())).statusCode).toBe(200); // another prefix has its own budget
  });

  it('the infrastructure key is exempt once verified — not a wrong secret for its prefix', async () => {
    const infra = `jim_ak_${randomBytes(32).toString('hex')}`;
    const app = await buildTestApp({ env: { ...LIMITS, JIM_INFRASTRUCTURE_API_KEY: infra } });
    const ip = addr();
    for (let i = 0; i < 12; i++) expect((await me(app, { 'x-api-key': infra }, ip)).statusCode).toBe(200);
    const wrong = { 'x-api-key': `${infra.slice(0, 16)}${'0'.repeat(infra.length - 16)}` };
    const other = addr();
    for (let i = 0; i < 3; i++) expect((await me(app, wrong, other)).statusCode).toBe(401);
    expect429(await me(app, wrong, other));
  });

  it('a burst of concurrent wrong secrets for one prefix, from any number of addresses, gets no more argon2 work than its budget', async () => {
    await expectBurstBounded({});
  });

  it('keeps the precise 401 codes of header problems, and records refusals as RATE_LIMITED events', async () => {
    const app = await buildTestApp({ env: LIMITS });
    const ip = addr();
    const a = `jim_ak_${'a'.repeat(64)}`;
    const both = await me(app, { 'x-api-key': a, authorization: `Bearer jim_ak_${'b'.repeat(64)}` }, ip);
    expect(both.statusCode).toBe(401);
    expect(both.json()).toMatchObject({ code: 'API_KEY_INVALID', detail: 'X-API-Key and Authorization carry different keys.' });
    const basic = await me(app, { authorization: 'Basic eDp5' }, ip);
    expect(basic.json().detail).toMatch(/Only Bearer authorization is supported/);
    await me(app, {}, ip); // three failures: the address's budget is spent
    const real = await seedKey(app, { roleIds: [READER] });
    // From an address out of budget, a wrong secret for a clean prefix is still verified (it
    // could be a new valid key) and answered 429; once the prefix has a failure, the rest are
    // refused before their key is checked.
    for (let i = 0; i < 5; i++) expect((await me(app, { 'x-api-key': `${real.secret.slice(0, 16)}${randomBytes(28).toString('hex')}` }, ip)).statusCode).toBe(429);
    // An unknown prefix costs no argon2: it is checked, recorded as invalid, and answered 429.
    expect((await me(app, { 'x-api-key': `jim_ak_${randomBytes(32).toString('hex')}` }, ip)).statusCode).toBe(429);
    await app.services.securityEvents.flush();
    const { sql } = await import('./helpers/keys.js');
    const { testDatabase } = await import('./helpers/app.js');
    const rows = await sql<{ reason: string; prefix: string; n: number }>(
      (await testDatabase()).url,
      `SELECT reason, CASE WHEN key_prefix = 'unknown' THEN 'unknown' ELSE 'real' END AS prefix, sum(count)::int AS n
         FROM security_events WHERE ip = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
      [ip],
    );
    expect(rows).toEqual([
      { reason: 'API_KEY_INVALID', prefix: 'real', n: 1 },
      { reason: 'API_KEY_INVALID', prefix: 'unknown', n: 2 },
      { reason: 'RATE_LIMITED', prefix: 'real', n: 4 },
      { reason: 'UNAUTHENTICATED', prefix: 'unknown', n: 2 },
    ]);
  });

  it('a spent failure budget does not block a cached key whose entry only needs a refresh (no argon2)', async () => {
    const app = await buildTestApp({ env: LIMITS });
    const key = await seedKey(app, { roleIds: [READER] });
    const ip = addr();
    expect((await me(app, key.headers, ip)).statusCode).toBe(200); // cached
    for (let i = 0; i < 4; i++) await me(app, {}, ip); // spend the address's failure budget
    expect429(await me(app, {}, ip));
    const { SYSTEM_ACTOR } = await import('../src/services/api-keys.js');
    await app.services.keys.patch(SYSTEM_ACTOR, key.id, { description: 'changed' }); // entry now stale
    expect((await me(app, key.headers, ip)).statusCode).toBe(200);
  });

  it('a forwarded address that is not an IP address is counted as "invalid", not as itself', async () => {
    const app = await buildTestApp({ env: { ...LIMITS, TRUST_PROXY: '127.0.0.1' } });
    for (let i = 0; i < 3; i++) await me(app, { 'x-forwarded-for': `junk-${i}-${'x'.repeat(5000)}` }, '127.0.0.1');
    expect429(await me(app, { 'x-forwarded-for': 'other-junk' }, '127.0.0.1'));
  });

  it('X-Forwarded-For counts only through a trusted proxy', async () => {
    const untrusting = await buildTestApp({ env: LIMITS });
    const proxy = addr();
    for (let i = 0; i < 3; i++) await me(untrusting, { 'x-forwarded-for': addr() }, proxy);
    expect429(await me(untrusting, { 'x-forwarded-for': addr() }, proxy));

    const trusting = await buildTestApp({ env: { ...LIMITS, TRUST_PROXY: '127.0.0.1' } });
    for (let i = 0; i < 6; i++) {
      const res = await me(trusting, { 'x-forwarded-for': addr() }, '127.0.0.1');
      expect(res.statusCode).toBe(401); // each forwarded client has its own budget
    }
    const client = addr();
    for (let i = 0; i < 3; i++) await me(trusting, { 'x-forwarded-for': client }, '127.0.0.1');
    expect429(await me(trusting, { 'x-forwarded-for': client }, '127.0.0.1'));
  });

  it('IPv6 clients share one budget per /64', async () => {
    const app = await buildTestApp({ env: LIMITS });
    const net64 = `2001:db8:${randomInt(1, 0xffff).toString(16)}:1`;
    for (let i = 0; i < 3; i++) await me(app, {}, `${net64}::${i + 1}`);
    expect429(await me(app, {}, `${net64}::ff`));
  });

  it('can be switched off', async () => {
    const app = await buildTestApp({ env: { ...LIMITS, RATE_LIMIT_ENABLED: 'false' } });
    const ip = addr();
    for (let i = 0; i < 10; i++) expect((await me(app, {}, ip)).statusCode).toBe(401);
  });
});

describe('a valid key is never refused for its address (default limits)', () => {
  const DEFAULTS = { RATE_LIMIT_ENABLED: 'true' };

  it('40 bad requests from an address, then a brand-new valid key from it: 200; its own limit still answers 429 after 300', async () => {
    const app = await buildTestApp({ env: DEFAULTS });
    const neighbour = await seedKey(app, { roleIds: [READER] });
    const ip = addr();
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      // A typo'd script: half unknown keys, half wrong secrets for a real key's prefix.
      const key = i % 2 ? `jim_ak_${randomBytes(32).toString('hex')}` : `${neighbour.secret.slice(0, 16)}${randomBytes(28).toString('hex')}`;
      statuses.push((await me(app, { 'x-api-key': key }, ip)).statusCode);
    }
    expect(statuses.slice(0, 30).every((s) => s === 401)).toBe(true);
    expect(statuses.slice(30).every((s) => s === 429)).toBe(true); // the address is limited for keys that fail
    const fresh = await seedKey(app, { roleIds: [READER] });
    const first = await me(app, fresh.headers, ip);
    expect(first.statusCode).toBe(200);
    expect(first.json().id).toBe(fresh.id);
    expect(first.headers['ratelimit-limit']).toBeUndefined(); // below half its budget
    for (let i = 1; i < 300; i++) {
      const res = await me(app, fresh.headers, ip);
      expect(res.statusCode).toBe(200);
      if (i === 149) expect(res.headers).toMatchObject({ 'ratelimit-limit': '300', 'ratelimit-remaining': '150' });
    }
    const over = await me(app, fresh.headers, ip);
    expect429(over);
    expect(over.json().detail).toMatch(/^Too many requests for this API key; retry in \d+ s\.$/);
    expect((await me(app, { 'x-api-key': `jim_ak_${randomBytes(32).toString('hex')}` }, ip)).statusCode).toBe(429); // still no way in for bad keys
  });

  it('nor by wrong secrets for its own prefix: the configured infrastructure secret skips the prefix budget', async () => {
    const infra = `jim_ak_${randomBytes(32).toString('hex')}`;
    await buildTestApp({ env: { ...DEFAULTS, JIM_INFRASTRUCTURE_API_KEY: infra } });
    const restarted = await buildTestApp({ env: { ...DEFAULTS, JIM_INFRASTRUCTURE_API_KEY: infra } });
    const guess = () => ({ 'x-api-key': `${infra.slice(0, 16)}${randomBytes(28).toString('hex')}` });
    for (let i = 0; i < 31; i++) expect((await me(restarted, guess(), addr())).statusCode).toBe(401); // the prefix's budget is spent
    const res = await me(restarted, { 'x-api-key': infra }, addr());
    expect(res.statusCode).toBe(200);
    expect(res.json().name).toBe('Infrastructure Key');
  });

  it('the infrastructure key on an instance that has not cached it (after a restart) is not locked out by 40 failures', async () => {
    const infra = `jim_ak_${randomBytes(32).toString('hex')}`;
    await buildTestApp({ env: { ...DEFAULTS, JIM_INFRASTRUCTURE_API_KEY: infra } }); // creates it
    const restarted = await buildTestApp({ env: { ...DEFAULTS, JIM_INFRASTRUCTURE_API_KEY: infra } });
    const ip = addr();
    for (let i = 0; i < 40; i++) await me(restarted, { 'x-api-key': `jim_ak_${randomBytes(32).toString('hex')}` }, ip);
    expect429(await me(restarted, {}, ip));
    const res = await me(restarted, { 'x-api-key': infra }, ip);
    expect(res.statusCode).toBe(200);
    expect(res.json().name).toBe('Infrastructure Key');
  });
});

const redis = await redisAnswers();
if (!redis) console.log('[rate limits] no Redis at 127.0.0.1:6379: the shared-budget test is skipped');
describe.runIf(redis)('rate limits shared through Redis', () => {
  it('a burst of concurrent wrong secrets for one prefix still gets no more argon2 than its budget (the reservation precedes the round trip)', async () => {
    // A loaded CI machine can hold a command past the 500 ms default, and a reservation that falls
    // back to memory is counted there (by design): this test is about the order, not the fallback.
    await expectBurstBounded({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_COMMAND_TIMEOUT_MS: '10000' });
  });

  it('two instances spend one budget', async () => {
    const env = { ...LIMITS, REDIS_URL: 'redis://127.0.0.1:6379' };
    const a = await buildTestApp({ env });
    const b = await buildTestApp({ env });
    const key = await seedKey(a, { roleIds: [READER] });
    const ip = addr();
    const results: number[] = [];
    for (let i = 0; i < 6; i++) results.push((await me(i % 2 ? b : a, key.headers, ip)).statusCode);
    expect(results).toEqual([200, 200, 200, 200, 200, 429]);
    const failIp = addr();
    for (let i = 0; i < 3; i++) expect((await me(i % 2 ? b : a, {}, failIp)).statusCode).toBe(401);
    expect429(await me(b, {}, failIp));
  });
});
