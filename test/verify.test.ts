// POST /api/v1/apikeys/verify and its event stream: the verdicts, the same cache and flood
// protection as direct authentication, the presented key's budget instead of the gateway's,
// lastUsed and security events under the presented key, and invalidations pushed on every change.
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { keyPrefixOf } from '../src/auth/key-format.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { countingHasher } from './helpers/auth-load.js';
import { until } from './helpers/until.js';
import { ADMIN, json, OPERATOR, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { openSse, type SseReader } from './helpers/sse.js';
import { createVerifier } from '@keyward/verify';

const VERIFIER = 5;


let url: string;
let app: App;
let admin: SeededKey;
let verifier: SeededKey;
let base: string;
const logs: string[] = [];
const counting = countingHasher();
const streams: SseReader[] = [];

beforeAll(async () => {
  url = (await testDatabase()).url;
  app = await buildTestApp({
    env: { LOG_LEVEL: 'debug', VERIFY_EVENTS_HEARTBEAT_MS: '300' },
    hasher: counting.hasher,
    logStream: new Writable({ write: (c, _e, cb) => (logs.push(String(c)), cb()) }),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/v1`;
  admin = await seedKey(app, { name: 'verify-admin', roleIds: [ADMIN] });
  verifier = await seedKey(app, { name: 'gateway', roleIds: [VERIFIER] });
});
afterAll(() => streams.forEach((s) => s.close()));

const verify = (body: object, caller: SeededKey = verifier, a: App = app) =>
  a.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: { ...caller.headers, ...json }, payload: body as never });
const patch = (id: string, body: object) => app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${id}`, headers: { ...admin.headers, ...json }, payload: body as never });
const sse = async (key: SeededKey = verifier, at = base) => {
  const s = await openSse(`${at}/apikeys/verify/events`, key.secret);
  streams.push(s);
  return s;
};

describe('the verdict', () => {
  it('VALID with the key\'s id, name, roles, permissions, expiry and metadata', async () => {
    const id = (
      await app.inject({
        method: 'POST',
        url: '/api/v1/apikeys',
        headers: { ...admin.headers, ...json },
        payload: { name: 'shop', roleIds: [READER], expiresAt: '2099-01-01T00:00:00Z', metadata: { tenantId: 't-42' } },
      })
    ).json();
    const res = await verify({ key: id.key, requiredPermissions: ['apikeys.read'], clientIp: '203.0.113.7' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.json()).toEqual({
      valid: true,
      code: 'VALID',
      keyId: id.id,
      name: 'shop',
      roles: [{ id: READER, name: 'Reader' }],
      permissions: ['apikeys.read', 'audit.read', 'roles.read'],
      expiresAt: '2099-01-01T00:00:00.000Z',
      metadata: { tenantId: 't-42' },
      allowedCidrs: null,
      rateLimit: null,
    });
  });

  it('INSUFFICIENT_PERMISSIONS names what is missing; application permissions and wildcards count', async () => {
    const role = (
      await app.inject({ method: 'POST', url: '/api/v1/roles', headers: { ...admin.headers, ...json }, payload: { name: 'orders-all', permissions: ['orders.*'] } })
    ).json().id;
    const key = await seedKey(app, { name: 'orders-client', roleIds: [role] });
    expect((await verify({ key: key.secret, requiredPermissions: ['orders.read', 'orders.items.write'] })).json()).toMatchObject({ valid: true, code: 'VALID' });
    const res = (await verify({ key: key.secret, requiredPermissions: ['orders.read', 'billing.read', 'apikeys.read'] })).json();
    expect(res).toMatchObject({ valid: false, code: 'INSUFFICIENT_PERMISSIONS', keyId: key.id, missingPermissions: ['billing.read', 'apikeys.read'] });
  });

  it('NOT_FOUND alike for malformed, unknown and wrong secrets, with nothing about any key', async () => {
    const real = await seedKey(app, { name: 'real' });
    const wrong = real.secret.slice(0, 20) + 'x'.repeat(real.secret.length - 20);
    for (const key of ['', 'garbage', 'jim_ak_short', `jim_ak_${'A'.repeat(40)}`, wrong]) {
      const res = await verify({ key });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ valid: false, code: 'NOT_FOUND' });
    }
  });

  it('DISABLED and EXPIRED, once the secret verified, say whose key it is', async () => {
    const off = await seedKey(app, { name: 'off', roleIds: [READER], isEnabled: false });
    expect((await verify({ key: off.secret })).json()).toMatchObject({ valid: false, code: 'DISABLED', keyId: off.id, name: 'off' });
    const old = await seedKey(app, { name: 'old', roleIds: [READER], expiresAt: new Date(Date.now() + 1_000).toISOString() });
    expect((await verify({ key: old.secret })).json().code).toBe('VALID');
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await verify({ key: old.secret })).json()).toMatchObject({ valid: false, code: 'EXPIRED', keyId: old.id });
    // Wrong secret for a disabled key: still NOT_FOUND.
    expect((await verify({ key: off.secret.slice(0, -3) + 'zzz' })).json()).toEqual({ valid: false, code: 'NOT_FOUND' });
  });

  it('400, 401, 403 concern only the caller\'s own request and key', async () => {
    const noKey = await app.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: json, payload: { key: 'x' } });
    expect(noKey.statusCode).toBe(401);
    const reader = await seedKey(app, { name: 'not-a-gateway', roleIds: [READER] });
    const forbidden = await verify({ key: 'x' }, reader);
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json().detail).toMatch(/apikeys\.verify/);
    const operator = await seedKey(app, { name: 'operator-gateway', roleIds: [OPERATOR] });
    expect((await verify({ key: 'x' }, operator)).statusCode).toBe(200);
    expect((await verify({ key: 'x' }, admin)).statusCode).toBe(200);
    for (const [body, detail] of [
      [{ key: 'x', clientIp: 'not-an-ip' }, /^clientIp must be an IPv4 or IPv6 address/],
      [{ key: 'x', requiredPermissions: ['Orders.Read'] }, /^requiredPermissions\[0\] must be lower-case words/],
      [{ key: 'x', requiredPermissions: 'orders.read' }, /^requiredPermissions must be an array/],
      [{}, /^key is required/],
      [{ key: 'x', keyy: 1 }, /unknown field keyy/],
    ] as const) {
      const res = await verify(body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().detail).toMatch(detail);
    }
  });
});

describe('the same machinery as direct authentication', () => {
  it('a presented key is verified with argon2 once, then served from the cache (for verify and for direct use)', async () => {
    const key = await seedKey(app, { name: 'cached', roleIds: [READER] });
    const before = counting.verifies();
    expect((await verify({ key: key.secret })).json().code).toBe('VALID');
    expect(counting.verifies()).toBe(before + 1);
    for (let i = 0; i < 5; i++) expect((await verify({ key: key.secret })).json().code).toBe('VALID');
    expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
    expect(counting.verifies()).toBe(before + 1);
  });

  it('a disable reaches the next verify at once', async () => {
    const key = await seedKey(app, { name: 'to-disable', roleIds: [READER] });
    expect((await verify({ key: key.secret })).json().code).toBe('VALID');
    expect((await patch(key.id, { isEnabled: false })).statusCode).toBe(200);
    expect((await verify({ key: key.secret })).json().code).toBe('DISABLED');
    expect((await patch(key.id, { isEnabled: true })).statusCode).toBe(200);
    expect((await verify({ key: key.secret })).json().code).toBe('VALID');
  });

  it('records lastUsedAt and lastUsedFromIp from clientIp, and failures as security events under the presented prefix and clientIp', async () => {
    const key = await seedKey(app, { name: 'used-via-gateway', roleIds: [READER] });
    await verify({ key: key.secret, clientIp: '198.51.100.23' });
    await app.services.lastUsed.flush();
    const [row] = await sql(url, 'SELECT last_used_at, last_used_from_ip FROM api_keys WHERE id = $1', [key.id]);
    expect(row.last_used_from_ip).toBe('198.51.100.23');
    expect(row.last_used_at).not.toBeNull();
    const wrong = key.secret.slice(0, -4) + 'QQQQ';
    await verify({ key: wrong, clientIp: '198.51.100.99' });
    await verify({ key: wrong, clientIp: '198.51.100.99' });
    await app.services.securityEvents.flush();
    const events = await sql(url, "SELECT key_prefix, ip, reason, count FROM security_events WHERE ip = '198.51.100.99'");
    expect(events).toEqual([{ key_prefix: keyPrefixOf(key.secret), ip: '198.51.100.99', reason: 'API_KEY_INVALID', count: 2 }]);
  });

  it('never logs the presented secret', async () => {
    const key = await seedKey(app, { name: 'secret-in-logs', roleIds: [READER] });
    await verify({ key: key.secret });
    await verify({ key: key.secret.slice(0, -2) + '!!' });
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.join('')).not.toContain(key.secret.slice(16));
  });
});

describe('rate limits and floods', () => {
  let limited: App;
  const hasher = countingHasher();
  beforeAll(async () => {
    limited = await buildTestApp({
      env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_KEY_MAX: '3', RATE_LIMIT_IP_MAX: '1000', RATE_LIMIT_PREFIX_MAX: '5' },
      hasher: hasher.hasher,
    });
  });

  it('spends the presented key\'s own budget, never the gateway\'s: a gateway is not throttled by its clients\' traffic', async () => {
    const gateway = await seedKey(limited, { name: 'busy-gateway', roleIds: [VERIFIER] });
    const clients = await Promise.all([1, 2, 3, 4].map((i) => seedKey(limited, { name: `client-${i}`, roleIds: [READER] })));
    for (const c of clients) for (let i = 0; i < 3; i++) expect((await verify({ key: c.secret }, gateway, limited)).json().code).toBe('VALID');
    // 12 verifications by one gateway key whose own budget is 3: none refused. The 4th of one client is.
    const over = await verify({ key: clients[0].secret }, gateway, limited);
    expect(over.statusCode).toBe(200);
    expect(over.json()).toMatchObject({ valid: false, code: 'RATE_LIMITED', keyId: clients[0].id });
    expect(over.json().retryAfterSeconds).toBeGreaterThan(0);
    // The gateway's own budget still applies to its other requests.
    for (let i = 0; i < 3; i++) await limited.inject({ method: 'GET', url: '/api/v1/userinfo', headers: gateway.headers });
    expect((await limited.inject({ method: 'GET', url: '/api/v1/userinfo', headers: gateway.headers })).statusCode).toBe(429);
  });

  it('bounds argon2 for wrong secrets of one prefix exactly as direct authentication does', async () => {
    const gateway = await seedKey(limited, { name: 'flood-gateway', roleIds: [VERIFIER] });
    const victim = await seedKey(limited, { name: 'victim', roleIds: [READER] });
    await verify({ key: 'warm-up' }, gateway, limited); // the gateway's own key is verified (and cached) first
    const before = hasher.verifies();
    const answers = [];
    for (let i = 0; i < 20; i++) {
      const guess = victim.secret.slice(0, 16) + i.toString().padStart(4, '0') + 'x'.repeat(victim.secret.length - 20);
      answers.push((await verify({ key: guess, clientIp: `192.0.2.${i + 1}` }, gateway, limited)).json());
    }
    expect(answers.every((a) => a.valid === false && a.code === 'NOT_FOUND' && a.keyId === undefined)).toBe(true);
    expect(hasher.verifies() - before).toBe(5); // RATE_LIMIT_PREFIX_MAX
  });
});

describe('refusals of verified secrets', () => {
  it('DISABLED and EXPIRED come at once and spend no failure budget of the client address; guesses still wait and do', async () => {
    const strict = await buildTestApp({ env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_IP_MAX: '2', RATE_LIMIT_KEY_MAX: '1000', AUTH_FAILURE_DELAY_MS: '300' } });
    const gateway = await seedKey(strict, { name: 'strict-gateway', roleIds: [VERIFIER] });
    const revoked = await Promise.all([1, 2, 3, 4, 5].map((i) => seedKey(strict, { name: `revoked-${i}`, roleIds: [READER], isEnabled: false })));
    for (const k of revoked) {
      const t = performance.now();
      const res = (await verify({ key: k.secret, clientIp: '192.0.2.50' }, gateway, strict)).json();
      expect(res).toMatchObject({ valid: false, code: 'DISABLED', keyId: k.id });
      expect(performance.now() - t).toBeLessThan(300);
    }
    const t = performance.now();
    expect((await verify({ key: `jim_ak_${'x'.repeat(40)}`, clientIp: '192.0.2.50' }, gateway, strict)).json().code).toBe('NOT_FOUND');
    expect(performance.now() - t).toBeGreaterThanOrEqual(290);
    await verify({ key: `jim_ak_${'y'.repeat(40)}`, clientIp: '192.0.2.50' }, gateway, strict);
    // The address's 2 failures are spent by the guesses alone: a third guess is refused by its budget.
    expect((await verify({ key: `jim_ak_${'z'.repeat(40)}`, clientIp: '192.0.2.50' }, gateway, strict)).json().code).toBe('RATE_LIMITED');
    expect((await verify({ key: revoked[0].secret, clientIp: '192.0.2.51' }, gateway, strict)).json().code).toBe('DISABLED');
  });
});

describe('the event stream', () => {
  it('starts with reset (connected), sends heartbeats, and invalidates on change, re-role, role change and delete — ids only', async () => {
    const stream = await sse();
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(stream.headers['cache-control']).toBe('no-store');
    expect(stream.headers['x-accel-buffering']).toBe('no');
    const first = await stream.next(() => true);
    expect(first).toMatchObject({ event: 'reset' });
    expect(JSON.parse(first.data)).toEqual({ reason: 'connected', heartbeatMs: 300, maxAgeMs: 60_000 });
    await stream.next((e) => e.event === 'heartbeat', 2_000);

    const key = await seedKey(app, { name: 'watched-secret-name', roleIds: [READER] });
    const invalidated = (id: string) => (e: { event: string; data: string }) => e.event === 'invalidate' && JSON.parse(e.data).keyIds.includes(id);
    let from = stream.events.length;
    await patch(key.id, { isEnabled: false });
    const ev = await stream.next(invalidated(key.id), 2_000, from);
    expect(JSON.parse(ev.data)).toEqual({ keyIds: [key.id] });

    const role = (await app.inject({ method: 'POST', url: '/api/v1/roles', headers: { ...admin.headers, ...json }, payload: { name: 'watched-role', permissions: ['a.b'] } })).json().id;
    from = stream.events.length;
    await patch(key.id, { roleIds: [role] });
    await stream.next(invalidated(key.id), 2_000, from);
    from = stream.events.length;
    await app.inject({ method: 'PATCH', url: `/api/v1/roles/${role}`, headers: { ...admin.headers, ...json }, payload: { permissions: ['a.c'] } });
    await stream.next(invalidated(key.id), 2_000, from);
    from = stream.events.length;
    await app.inject({ method: 'PATCH', url: `/api/v1/roles/${role}`, headers: { ...admin.headers, ...json }, payload: { description: 'no grant change' } });
    await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${key.id}`, headers: admin.headers });
    await stream.next(invalidated(key.id), 2_000, from);
    // The description-only change sent nothing: the one invalidate after `from` is the delete's.
    expect(stream.events.slice(from).filter((e) => e.event === 'invalidate')).toHaveLength(1);
    expect(stream.raw()).not.toContain('watched-secret-name');
    expect(stream.raw()).not.toContain(key.secret.slice(16));
    expect(stream.raw()).not.toContain('jim_ak_');
  });

  it('carries changes made through another instance (LISTEN/NOTIFY)', async () => {
    const other = await buildTestApp();
    await until(() => other.services.listener.listening && app.services.listener.listening, 5_000);
    const stream = await sse();
    await stream.next((e) => e.event === 'reset');
    const key = await seedKey(app, { name: 'changed-elsewhere' });
    const started = performance.now();
    await other.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload: { isEnabled: false } });
    const ev = await stream.next((e) => e.event === 'invalidate' && e.data.includes(key.id), 2_000);
    expect(ev.at - started).toBeLessThan(2_000);
    await other.close();
  });

  it('needs apikeys.verify; ends (after reset) when the caller\'s own key changes', async () => {
    const reader = await seedKey(app, { name: 'no-stream', roleIds: [READER] });
    const refused = await sse(reader);
    expect(refused.status).toBe(403);
    const own = await seedKey(app, { name: 'own-gateway', roleIds: [VERIFIER] });
    const stream = await sse(own);
    await stream.next((e) => e.event === 'reset');
    await patch(own.id, { isEnabled: false });
    await stream.next((e) => e.event === 'invalidate' && e.data.includes(own.id));
    await stream.ended;
    expect((await sse(own)).status).toBe(401);
  });

  it('a client gone before its key verified leaves no subscriber; a stream ends when its key expires', async () => {
    const before = app.services.verifyEvents.size;
    const slow = await seedKey(app, { name: 'slow-gateway', roleIds: [VERIFIER] });
    const release = counting.hold(); // its first use waits in argon2
    const http = await import('node:http');
    const req = http.get(`${base}/apikeys/verify/events`, { headers: { 'x-api-key': slow.secret }, agent: false });
    req.on('error', () => {});
    await new Promise((r) => setTimeout(r, 100));
    req.destroy();
    await new Promise((r) => setTimeout(r, 50));
    release();
    await new Promise((r) => setTimeout(r, 200));
    expect(app.services.verifyEvents.size).toBe(before);
    const brief = await seedKey(app, { name: 'brief-gateway', roleIds: [VERIFIER], expiresAt: new Date(Date.now() + 1_500).toISOString() });
    const stream = await sse(brief);
    await stream.next((e) => e.event === 'reset');
    const t = performance.now();
    await stream.ended;
    expect(performance.now() - t).toBeLessThan(3_000);
  });

  it('sends reset (listener-lost) and ends every stream when the instance\'s listener drops; 503 until it is back', async () => {
    const stream = await sse();
    await stream.next((e) => e.event === 'reset');
    const pid = await app.services.listener.backendPid();
    await sql(url, 'SELECT pg_terminate_backend($1)', [pid]);
    const lost = await stream.next((e) => e.event === 'reset' && e.data.includes('listener-lost'), 5_000, 1);
    expect(JSON.parse(lost.data)).toEqual({ reason: 'listener-lost' });
    await stream.ended;
    await until(() => app.services.listener.listening, 10_000);
    const again = await sse();
    expect(again.status).toBe(200);
    await again.next((e) => e.event === 'reset' && e.data.includes('connected'));
  });

  it('offers no stream (503) while the instance is not listening: it could not vouch for what it would send', async () => {
    const deaf = await buildTestApp();
    await deaf.listen({ host: '127.0.0.1', port: 0 });
    const gateway = await seedKey(deaf, { name: 'deaf-gateway', roleIds: [VERIFIER] });
    const at = `http://127.0.0.1:${(deaf.server.address() as AddressInfo).port}/api/v1`;
    expect((await sse(gateway, at)).status).toBe(200);
    await deaf.services.listener.stop(); // for good: it does not come back
    const refused = await sse(gateway, at);
    expect(refused.status).toBe(503);
    expect(refused.headers['content-type']).toBe('application/problem+json');
    await refused.ended;
    expect(JSON.parse(refused.raw())).toMatchObject({ code: 'SERVICE_UNAVAILABLE', detail: expect.stringMatching(/not hearing key changes/) });
    await deaf.close();
  });
});

describe('@keyward/verify against this server', () => {
  it('caches a verdict once the stream settled, answers hits synchronously (frozen), and forgets a key the moment it is disabled', async () => {
    const gateway = await seedKey(app, { name: 'library-gateway', roleIds: [VERIFIER] });
    const key = await seedKey(app, { name: 'library-client', roleIds: [READER] });
    const verifier = createVerifier({ url: base.replace(/\/api\/v1$/, ''), apiKey: gateway.secret });
    try {
      expect(await verifier.ready(10_000)).toBe(true);
      const required = Object.freeze(['apikeys.read']);
      expect(verifier.cached(key.secret, { requiredPermissions: required })).toBeUndefined();
      expect((await verifier.verify(key.secret, { requiredPermissions: required, clientIp: '198.51.100.1' })).code).toBe('VALID');
      const memo = {};
      const hit = verifier.cached(key.secret, { requiredPermissions: required }, memo);
      expect(hit).toMatchObject({ valid: true, code: 'VALID', keyId: key.id, permissions: ['apikeys.read', 'audit.read', 'roles.read'] });
      expect(Object.isFrozen(hit)).toBe(true);
      expect(verifier.cached(key.secret, { requiredPermissions: required }, memo)).toBe(hit);
      expect(verifier.cached(key.secret, { requiredPermissions: ['orders.read'] })).toMatchObject({ valid: false, code: 'INSUFFICIENT_PERMISSIONS', missingPermissions: ['orders.read'] });
      expect(JSON.stringify(memo)).toContain(key.secret); // the memo is the caller's, per connection
      expect(JSON.stringify(verifier.stats())).not.toContain(key.secret);
      // The change's reply comes after this instance's subscribers were sent the invalidation.
      expect((await patch(key.id, { isEnabled: false })).statusCode).toBe(200);
      await until(() => verifier.cached(key.secret, { requiredPermissions: required }, memo) === undefined, 1_000);
      expect((await verifier.verify(key.secret)).code).toBe('DISABLED');
    } finally {
      verifier.close();
    }
  });
});
