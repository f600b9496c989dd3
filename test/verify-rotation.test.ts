// The consumer library (@keyward/verify, as built) against two real keyward instances on one
// database: a rotation made on one instance, with and without a grace period, is honoured by a
// verifier whose stream is on the other; allowlists are judged on cached answers by the client
// address; a key with its own limit is asked of keyward every time; a leaked-key report reaches
// the consumer's cache before the report's reply.
import type { AddressInfo } from 'node:net';
import { createVerifier, type Verifier } from '@keyward/verify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp } from './helpers/app.js';
import { ADMIN, json, READER, seedKey, type SeededKey } from './helpers/keys.js';
import { until } from './helpers/until.js';

const VERIFIER_ROLE = 5;
let a: App;
let b: App;
let admin: SeededKey;
let verifier: Verifier;
beforeAll(async () => {
  const env = { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_KEY_MAX: '1000', RATE_LIMIT_IP_MAX: '1000' };
  a = await buildTestApp({ env });
  b = await buildTestApp({ env });
  await b.listen({ host: '127.0.0.1', port: 0 });
  admin = await seedKey(a, { name: 'vr-admin', roleIds: [ADMIN] });
  const service = await seedKey(a, { name: 'vr-service', roleIds: [VERIFIER_ROLE] });
  verifier = createVerifier({ url: `http://127.0.0.1:${(b.server.address() as AddressInfo).port}`, apiKey: service.secret });
  expect(await verifier.ready()).toBe(true);
});
afterAll(() => verifier?.close());

const onA = (method: 'POST' | 'PATCH', url: string, payload: object) =>
  a.inject({ method, url: `/api/v1${url}`, headers: { ...admin.headers, ...json }, payload: payload as never });
/** Past the library's race guard (settleMs, 1 s): answers asked from now on are cached. */
const settle = () => new Promise((r) => setTimeout(r, 1_100));

describe('@keyward/verify with a rotation made on another instance', () => {
  it('grace 0: the cached old secret is refused at once, the new one verifies, same key id', async () => {
    const key = await seedKey(a, { name: 'vr-rotate-now', roleIds: [READER] });
    await settle();
    expect((await verifier.verify(key.secret)).code).toBe('VALID');
    const before = verifier.stats().requests;
    expect((await verifier.verify(key.secret)).code).toBe('VALID');
    expect(verifier.stats().requests).toBe(before); // cached
    const rotated = (await onA('POST', `/apikeys/${key.id}/rotate`, {})).json();
    // The invalidation reaches b's stream within the reply (a confirms with b before replying).
    await until(async () => (await verifier.verify(key.secret)).code === 'NOT_FOUND', 2_000);
    const fresh = await verifier.verify(rotated.key);
    expect(fresh).toMatchObject({ valid: true, code: 'VALID', keyId: key.id });
  });

  it('a grace period: the old secret verifies (with secretExpiresAt) until it ends, then NOT_FOUND from the cache\'s own clock', async () => {
    const key = await seedKey(a, { name: 'vr-rotate-grace', roleIds: [READER] });
    const rotated = (await onA('POST', `/apikeys/${key.id}/rotate`, { gracePeriodSeconds: 3 })).json();
    const end = Date.parse(rotated.previousKeyExpiresAt);
    await settle();
    const old = await verifier.verify(key.secret);
    expect(old).toMatchObject({ valid: true, code: 'VALID', keyId: key.id, secretExpiresAt: rotated.previousKeyExpiresAt });
    const asked = verifier.stats().requests;
    expect((await verifier.verify(key.secret)).code).toBe('VALID');
    expect(verifier.stats().requests).toBe(asked); // served from the cache during the grace
    expect((await verifier.verify(rotated.key)).secretExpiresAt).toBeUndefined();
    await until(() => Date.now() > end + 20, 5_000);
    // No notification marks the end: the entry's own deadline does, and keyward agrees.
    expect(await verifier.verify(key.secret)).toEqual({ valid: false, code: 'NOT_FOUND' });
    expect(verifier.stats().requests).toBeGreaterThan(asked);
    for (const on of [a, b]) {
      const res = await on.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers });
      expect(res.json().code).toBe('API_KEY_INVALID');
    }
    expect((await verifier.verify(rotated.key)).code).toBe('VALID');
  });
});

describe('@keyward/verify and the new key settings, against keyward', () => {
  it('judges an allowlist per client address on cached answers, as keyward does', async () => {
    const res = await onA('POST', '/apikeys', { name: 'vr-acl', roleIds: [READER], allowedCidrs: ['10.0.0.0/8'] });
    const secret = res.json().key as string;
    await settle();
    expect(await verifier.verify(secret, { clientIp: '10.1.1.1' })).toMatchObject({ valid: true, allowedCidrs: ['10.0.0.0/8'] });
    const asked = verifier.stats().requests;
    expect((await verifier.verify(secret, { clientIp: '192.0.2.1' })).code).toBe('IP_NOT_ALLOWED');
    expect((await verifier.verify(secret)).code).toBe('IP_NOT_ALLOWED');
    expect((await verifier.verify(secret, { clientIp: '::ffff:10.2.2.2' })).code).toBe('VALID');
    expect(verifier.cached(secret, { clientIp: '10.3.3.3' })?.code).toBe('VALID');
    expect(verifier.cached(secret, { clientIp: '11.0.0.1' })?.code).toBe('IP_NOT_ALLOWED');
    expect(verifier.stats().requests).toBe(asked); // all from the cache
    // keyward itself says the same for an address the cache never saw.
    const direct = await b.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: { 'x-api-key': (await seedKey(a, { roleIds: [VERIFIER_ROLE] })).secret, ...json }, payload: { key: secret, clientIp: '11.0.0.1' } });
    expect(direct.json().code).toBe('IP_NOT_ALLOWED');
  });

  it('asks keyward for every verify of a key with its own rateLimit, so its limit holds', async () => {
    const res = await onA('POST', '/apikeys', { name: 'vr-limited', roleIds: [READER], rateLimit: { limit: 3, windowSeconds: 60 } });
    const secret = res.json().key as string;
    await settle();
    const asked = verifier.stats().requests;
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push((await verifier.verify(secret)).code);
    expect(codes).toEqual(['VALID', 'VALID', 'VALID', 'RATE_LIMITED']);
    expect(verifier.stats().requests - asked).toBe(4);
    expect(verifier.cached(secret)).toBeUndefined();
  });

  it('a leaked-key report disables the key in the consumer\'s cache too', async () => {
    const key = await seedKey(a, { name: 'vr-leaked', roleIds: [READER] });
    await settle();
    expect((await verifier.verify(key.secret)).code).toBe('VALID');
    expect(verifier.cached(key.secret)?.code).toBe('VALID');
    const report = await a.inject({ method: 'POST', url: '/api/v1/apikeys/revoke', headers: json, payload: { keys: [key.secret] } });
    expect(report.statusCode).toBe(202);
    await until(async () => (await verifier.verify(key.secret)).code === 'DISABLED', 2_000);
  });
});
