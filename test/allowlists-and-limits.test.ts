// Address allowlists (allowedCidrs) and per-key request limits (rateLimit): strict validation
// that changes nothing, 403 IP_NOT_ALLOWED only after the secret verified (the cache's path and
// the database's), the client address by the TRUST_PROXY rule, verify judging `clientIp` alone,
// JIM's PUT leaving both alone, and a key's own limit counted across instances through Redis.
import { randomInt } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { redisAnswers } from './helpers/auth-load.js';
import { ADMIN, apiVisibleState, json, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

const redis = await redisAnswers();
let app: App;
let url: string;
let admin: SeededKey;
beforeAll(async () => {
  url = (await testDatabase()).url;
  app = await buildTestApp();
  admin = await seedKey(app, { name: 'acl-admin', roleIds: [ADMIN] });
});

const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, payload?: object, on: App = app) =>
  on.inject({ method, url: `/api/v1${path}`, headers: { ...admin.headers, ...(payload ? json : {}) }, payload: payload as never });
const from = (secret: string, remoteAddress: string, on: App = app, headers: Record<string, string> = {}) =>
  on.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': secret, ...headers }, remoteAddress });

async function keyWith(body: object): Promise<{ id: string; secret: string }> {
  const res = await call('POST', '/apikeys', { name: `acl-${randomInt(1e9)}`, roleIds: [READER], ...body });
  expect(res.statusCode, res.payload).toBe(201);
  return { id: res.json().id, secret: res.json().key };
}

describe('allowedCidrs', () => {
  it('is stored as given (canonical), shown by GET and the list; null and [] mean any address; one bare block is a list of one', async () => {
    const k = await keyWith({ allowedCidrs: ['10.0.0.0/8', '2001:db8::/32', '203.0.113.7/32'] });
    const got = (await call('GET', `/apikeys/${k.id}`)).json();
    expect(got.allowedCidrs).toEqual(['10.0.0.0/8', '2001:db8::/32', '203.0.113.7/32']);
    expect((await sql(url, 'SELECT allowed_cidrs FROM api_keys WHERE id = $1', [k.id]))[0].allowed_cidrs).toEqual(['10.0.0.0/8', '2001:db8::/32', '203.0.113.7/32']);
    const one = await keyWith({ allowedCidrs: '192.0.2.0/24' }); // as PowerShell unrolls a one-element array
    expect((await call('GET', `/apikeys/${one.id}`)).json().allowedCidrs).toEqual(['192.0.2.0/24']);
    for (const none of [null, []]) {
      const k2 = await keyWith({ allowedCidrs: none });
      expect((await call('GET', `/apikeys/${k2.id}`)).json().allowedCidrs).toBeNull();
    }
    expect((await keyWith({})).id).toBeDefined();
  });

  it('refuses malformed and non-canonical blocks with a 400 naming each one, creating nothing', async () => {
    const before = await apiVisibleState(url);
    const cases: Array<[unknown, RegExp]> = [
      [['10.0.0.1/8'], /^allowedCidrs\[0\] has host bits set \(10\.0\.0\.1\/8\): send 10\.0\.0\.0\/8 for the whole block, or 10\.0\.0\.1\/32/],
      [['10.0.0.0/8', '2001:DB8::/32'], /^allowedCidrs\[1\] must be in canonical form \(lowercase, zeros compressed\): 2001:db8::\/32/],
      [['2001:0db8::/32'], /canonical form/],
      [['10.0.0.1'], /^allowedCidrs\[0\] must be a CIDR block with a prefix length, e.g\. 10\.0\.0\.1\/32/],
      [['010.0.0.0/8'], /four decimal numbers/],
      [['10.1/16'], /four decimal numbers/],
      [['10.0.0.0/33'], /must be an IPv4 or IPv6 CIDR block/],
      [['fe80::/10', 'fe80::1%eth0/64'], /^allowedCidrs\[1\] must not carry an IPv6 zone/],
      [['::ffff:10.0.0.0/104'], /IPv4-mapped block as IPv4/],
      [['10.0.0.0/8', '10.0.0.0/8'], /^allowedCidrs must not repeat a block/],
      [Array.from({ length: 101 }, (_, i) => `10.0.${i}.0/24`), /^allowedCidrs must list at most 100 blocks/],
      [[42], /allowedCidrs/],
      [{ block: '10.0.0.0/8' }, /^allowedCidrs must be an array of CIDR blocks/],
    ];
    for (const [allowedCidrs, detail] of cases) {
      const res = await call('POST', '/apikeys', { name: 'acl-bad', allowedCidrs });
      expect(res.statusCode, JSON.stringify(allowedCidrs)).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json().code).toBe('VALIDATION_FAILED');
      expect(res.json().detail, JSON.stringify(allowedCidrs)).toMatch(detail);
    }
    expect(Array.from({ length: 100 }, (_, i) => `10.0.${i}.0/24`)).toHaveLength(100);
    expect(await apiVisibleState(url)).toEqual(before);
    expect((await call('POST', '/apikeys', { name: 'acl-100', allowedCidrs: Array.from({ length: 100 }, (_, i) => `10.0.${i}.0/24`) })).statusCode).toBe(201);
  });

  it('refuses a valid secret from outside with 403 IP_NOT_ALLOWED (cached or not), after the secret verified', async () => {
    const k = await keyWith({ allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'] });
    for (const ip of ['10.1.2.3', '::ffff:10.1.2.3', '2001:db8::7']) expect((await from(k.secret, ip)).statusCode, ip).toBe(200);
    for (const ip of ['127.0.0.1', '11.0.0.1', '2001:db9::1', '::1']) {
      const res = await from(k.secret, ip);
      expect(res.statusCode, ip).toBe(403);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json().code).toBe('IP_NOT_ALLOWED');
      expect(res.json().detail).toContain(ip);
      expect(res.payload).not.toContain(k.secret);
    }
    // A fresh instance (no cache): the database path refuses the same way.
    const cold = await buildTestApp();
    expect((await from(k.secret, '11.0.0.1', cold)).json().code).toBe('IP_NOT_ALLOWED');
    expect((await from(k.secret, '10.9.9.9', cold)).statusCode).toBe(200);
    await cold.close();
    // Without the secret nothing is revealed: a wrong secret from outside is a wrong secret.
    const wrong = `${k.secret.slice(0, 16)}${'0'.repeat(k.secret.length - 16)}`;
    expect((await from(wrong, '11.0.0.1')).json().code).toBe('API_KEY_INVALID');
  });

  it('a disabled or expired key says so before the allowlist; the allowlist follows changes at once', async () => {
    const k = await keyWith({ allowedCidrs: ['10.0.0.0/8'] });
    expect((await from(k.secret, '10.0.0.1')).statusCode).toBe(200);
    expect((await call('PATCH', `/apikeys/${k.id}`, { allowedCidrs: ['192.0.2.0/24'] })).statusCode).toBe(200);
    expect((await from(k.secret, '10.0.0.1')).json().code).toBe('IP_NOT_ALLOWED');
    expect((await from(k.secret, '192.0.2.9')).statusCode).toBe(200);
    expect((await call('PATCH', `/apikeys/${k.id}`, { isEnabled: false })).statusCode).toBe(200);
    expect((await from(k.secret, '10.0.0.1')).json().code).toBe('API_KEY_DISABLED');
    expect((await call('PATCH', `/apikeys/${k.id}`, { isEnabled: true, allowedCidrs: null })).json().allowedCidrs).toBeNull();
    expect((await from(k.secret, '10.0.0.1')).statusCode).toBe(200);
  });

  it('is judged on the client address by the TRUST_PROXY rule', async () => {
    const proxied = await buildTestApp({ env: { TRUST_PROXY: '127.0.0.1' } });
    const res = await proxied.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'acl-proxied', allowedCidrs: ['198.51.100.0/24'] } });
    const secret = res.json().key as string;
    expect((await from(secret, '127.0.0.1', proxied, { 'x-forwarded-for': '198.51.100.20' })).statusCode).toBe(200);
    expect((await from(secret, '127.0.0.1', proxied, { 'x-forwarded-for': '203.0.113.1' })).json().code).toBe('IP_NOT_ALLOWED');
    // An untrusted peer's X-Forwarded-For is ignored: its own address decides.
    expect((await from(secret, '192.0.2.1', proxied, { 'x-forwarded-for': '198.51.100.20' })).json().code).toBe('IP_NOT_ALLOWED');
    await proxied.close();
  });

  it('a block written behind keyward\'s back that does not parse matches nothing (403, never a 500); a nonsensical limit reads as the default', async () => {
    const k = await keyWith({ allowedCidrs: ['10.0.0.0/8'] });
    await sql(url, "UPDATE api_keys SET allowed_cidrs = ARRAY['not-a-block', '192.0.2.0/24'], rate_limit_max = 0, rate_limit_window_seconds = NULL WHERE id = $1", [k.id]);
    const cold = await buildTestApp({ env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_IP_MAX: '1000' } });
    expect((await from(k.secret, '10.0.0.1', cold)).json().code).toBe('IP_NOT_ALLOWED');
    expect((await from(k.secret, '192.0.2.3', cold)).statusCode).toBe(200);
    expect((await from(k.secret, '192.0.2.3', cold)).statusCode).toBe(200); // limit 0 would refuse: the default applies
    await cold.close();
  });

  it('records IP_NOT_ALLOWED as a security event under the key\'s prefix', async () => {
    const k = await keyWith({ allowedCidrs: ['10.0.0.0/8'] });
    await from(k.secret, '198.51.100.77');
    await app.services.securityEvents.flush();
    const rows = await sql(url, "SELECT key_prefix, reason, count FROM security_events WHERE ip = '198.51.100.77'");
    expect(rows).toEqual([{ key_prefix: k.secret.slice(0, 16), reason: 'IP_NOT_ALLOWED', count: 1 }]);
  });

  it('verify judges clientIp alone: inside VALID, outside or absent IP_NOT_ALLOWED (with the key\'s details)', async () => {
    const verifier = await seedKey(app, { name: 'acl-verifier', roleIds: [5] });
    const k = await keyWith({ allowedCidrs: ['10.0.0.0/8'] });
    const verify = (body: object) =>
      app.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: { ...verifier.headers, ...json }, payload: { key: k.secret, ...body }, remoteAddress: '10.0.0.5' });
    const inside = (await verify({ clientIp: '10.20.30.40' })).json();
    expect(inside).toMatchObject({ valid: true, code: 'VALID', keyId: k.id, allowedCidrs: ['10.0.0.0/8'], rateLimit: null });
    const outside = (await verify({ clientIp: '192.0.2.1' })).json();
    expect(outside).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED', keyId: k.id, allowedCidrs: ['10.0.0.0/8'] });
    // The gateway's own address (10.0.0.5, inside) does not count for its caller.
    const absent = (await verify({})).json();
    expect(absent).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED', keyId: k.id });
    const open = await keyWith({});
    const plain = await app.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: { ...verifier.headers, ...json }, payload: { key: open.secret } });
    expect(plain.json()).toMatchObject({ valid: true, allowedCidrs: null, rateLimit: null });
    expect(plain.json().secretExpiresAt).toBeUndefined();
  });
});

describe('fields beyond JIM survive its PUT', () => {
  it('a PUT without allowedCidrs and rateLimit leaves them; PATCH and PUT with them change them', async () => {
    const k = await keyWith({ allowedCidrs: ['10.0.0.0/8'], rateLimit: { limit: 50, windowSeconds: 10 }, metadata: { team: 'a' } });
    const put = await call('PUT', `/apikeys/${k.id}`, { name: 'acl-renamed', roleIds: [READER], isEnabled: true });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ name: 'acl-renamed', allowedCidrs: ['10.0.0.0/8'], rateLimit: { limit: 50, windowSeconds: 10 }, metadata: { team: 'a' } });
    const cleared = await call('PUT', `/apikeys/${k.id}`, { name: 'acl-renamed', roleIds: [READER], isEnabled: true, allowedCidrs: null, rateLimit: null });
    expect(cleared.json()).toMatchObject({ allowedCidrs: null, rateLimit: null });
    const [row] = await sql(url, 'SELECT allowed_cidrs, rate_limit_max, rate_limit_window_seconds FROM api_keys WHERE id = $1', [k.id]);
    expect(row).toEqual({ allowed_cidrs: [], rate_limit_max: null, rate_limit_window_seconds: null });
    const history = (await call('GET', `/apikeys/${k.id}/change-history`)).json();
    const snapshots = history.map((h: { snapshot: { allowedCidrs: unknown } }) => h.snapshot.allowedCidrs);
    expect(snapshots).toContainEqual(['10.0.0.0/8']);
    expect(snapshots).toContainEqual(null);
  });
});

describe('rateLimit', () => {
  it('refuses malformed limits with a 400 naming the field, changing nothing', async () => {
    const before = await apiVisibleState(url);
    const cases: Array<[unknown, RegExp]> = [
      [{ limit: 0, windowSeconds: 60 }, /^rateLimit\.limit must be a whole number from 1 to 1000000000/],
      [{ limit: 1.5, windowSeconds: 60 }, /^rateLimit\.limit must be a whole number/],
      [{ limit: 10, windowSeconds: 0 }, /^rateLimit\.windowSeconds must be a whole number of seconds from 1 to 86400/],
      [{ limit: 10, windowSeconds: 86_401 }, /^rateLimit\.windowSeconds must be a whole number of seconds from 1 to 86400/],
      [{ limit: 10 }, /^rateLimit\.windowSeconds is required/],
      [{ limit: 10, windowSeconds: 60, burst: 5 }, /burst/],
      [10, /rateLimit/],
    ];
    for (const [rateLimit, detail] of cases) {
      const res = await call('POST', '/apikeys', { name: 'rl-bad', rateLimit });
      expect(res.statusCode, JSON.stringify(rateLimit)).toBe(400);
      expect(res.json().code).toBe('VALIDATION_FAILED');
      expect(res.json().detail, JSON.stringify(rateLimit)).toMatch(detail);
    }
    expect(await apiVisibleState(url)).toEqual(before);
  });

  it('overrides the server default for that key only (its own window), for requests and for verify', async () => {
    const limited = await buildTestApp({ env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_KEY_MAX: '5', RATE_LIMIT_IP_MAX: '1000', RATE_LIMIT_WINDOW_MS: '60000' } });
    const mk = async (rateLimit: object | null) => {
      const res = await limited.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: `rl-${randomInt(1e9)}`, roleIds: [READER], rateLimit } });
      return res.json().key as string;
    };
    const own = await mk({ limit: 2, windowSeconds: 30 });
    const dflt = await mk(null);
    const generous = await mk({ limit: 8, windowSeconds: 60 });
    const codes = async (secret: string, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await from(secret, '10.0.0.1', limited)).statusCode);
      return out;
    };
    const ownCodes = await codes(own, 3);
    expect(ownCodes).toEqual([200, 200, 429]);
    const refused = await from(own, '10.0.0.1', limited);
    expect(refused.headers['ratelimit-limit']).toBe('2');
    expect(Number(refused.headers['ratelimit-reset'])).toBeLessThanOrEqual(30);
    expect(refused.json().detail).toMatch(/^Too many requests for this API key; retry in \d+ s\.$/);
    expect(await codes(dflt, 6)).toEqual([200, 200, 200, 200, 200, 429]);
    expect(await codes(generous, 9)).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 429]);
    // verify spends the presented key's own budget.
    const verifier = await seedKey(limited, { name: 'rl-verifier', roleIds: [5] });
    const fresh = await mk({ limit: 1, windowSeconds: 60 });
    const v = () => limited.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: { ...verifier.headers, ...json }, payload: { key: fresh } });
    const first = (await v()).json();
    expect(first).toMatchObject({ valid: true, rateLimit: { limit: 1, windowSeconds: 60 } });
    expect((await v()).json()).toMatchObject({ valid: false, code: 'RATE_LIMITED' });
    await limited.close();
  });

  it.runIf(redis)('is one budget across instances through Redis', async () => {
    const env = { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_KEY_MAX: '100', RATE_LIMIT_IP_MAX: '1000', RATE_LIMIT_WINDOW_MS: '60000', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_COMMAND_TIMEOUT_MS: '10000' };
    const a = await buildTestApp({ env });
    const b = await buildTestApp({ env });
    const res = await a.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'rl-shared', roleIds: [READER], rateLimit: { limit: 4, windowSeconds: 45 } } });
    const secret = res.json().key as string;
    const out: number[] = [];
    for (let i = 0; i < 6; i++) out.push((await from(secret, '10.0.0.2', i % 2 ? b : a)).statusCode);
    expect(out).toEqual([200, 200, 200, 200, 429, 429]);
    await a.close();
    await b.close();
  });
});

