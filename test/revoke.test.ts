// Revoking leaked keys by their secret (POST /apikeys/revoke): no authentication, the same 202
// and body whatever was found, each verifying key disabled (a grace-period secret ended instead)
// with a history entry naming the report, refused at once on another instance too, bounded
// input, a budget of reports per address, and no secret in the logs.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, apiVisibleState, json, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let other: App;
let url: string;
let admin: SeededKey;
const logs: string[] = [];
beforeAll(async () => {
  url = (await testDatabase()).url;
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  app = await buildTestApp({ env: { LOG_LEVEL: 'info' }, logStream });
  other = await buildTestApp();
  admin = await seedKey(app, { name: 'rev-admin', roleIds: [ADMIN] });
});

const report = (keys: unknown, extra: object = {}, on: App = app, remoteAddress = '203.0.113.50') =>
  on.inject({ method: 'POST', url: '/api/v1/apikeys/revoke', headers: json, payload: { keys, ...extra } as never, remoteAddress });
const whoami = (secret: string, on: App = app) => on.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': secret } });
const randomKey = () => `jim_ak_${randomBytes(32).toString('hex')}`;

describe('POST /apikeys/revoke', () => {
  it('disables each key whose secret verifies — without authentication — refused at once on both instances', async () => {
    const a = await seedKey(app, { name: 'rev-a', roleIds: [READER] });
    const b = await seedKey(app, { name: 'rev-b', roleIds: [READER] });
    const untouched = await seedKey(app, { name: 'rev-untouched', roleIds: [READER] });
    for (const k of [a, b, untouched]) {
      expect((await whoami(k.secret)).statusCode).toBe(200);
      expect((await whoami(k.secret, other)).statusCode).toBe(200);
    }
    const res = await report([a.secret, b.secret, randomKey(), 'not a key'], { source: 'https://example.com/leak.txt' });
    expect(res.statusCode).toBe(202);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json()).toEqual({ accepted: 4, message: expect.any(String) });
    for (const on of [app, other]) {
      for (const k of [a, b]) {
        const refused = await whoami(k.secret, on);
        expect(refused.statusCode).toBe(401);
        expect(refused.json().code).toBe('API_KEY_DISABLED');
      }
      expect((await whoami(untouched.secret, on)).statusCode).toBe(200);
    }
    // Disabled, not deleted; history names the report and its source.
    const got = await app.inject({ method: 'GET', url: `/api/v1/apikeys/${a.id}`, headers: admin.headers });
    expect(got.json().isEnabled).toBe(false);
    const history = (await app.inject({ method: 'GET', url: `/api/v1/apikeys/${a.id}/change-history`, headers: admin.headers })).json();
    const entry = history.find((h: { operation: string }) => h.operation === 'revoke');
    expect(entry).toMatchObject({
      operation: 'revoke',
      actor: { type: 'revocationReport', id: null, name: 'leaked-key report' },
      changeReason: 'Reported as leaked (found at: https://example.com/leak.txt)',
      snapshot: { isEnabled: false },
    });
    // An administrator can enable it again.
    expect((await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${a.id}`, headers: { ...admin.headers, ...json }, payload: { isEnabled: true } })).statusCode).toBe(200);
    expect((await whoami(a.secret)).statusCode).toBe(200);
  });

  it('answers the same whatever was found: real, unknown, wrong-secret, already disabled, malformed', async () => {
    const real = await seedKey(app, { name: 'rev-same', roleIds: [READER] });
    const disabled = await seedKey(app, { name: 'rev-already', roleIds: [READER], isEnabled: false });
    const bodies = new Set<string>();
    for (const key of [real.secret, randomKey(), `${real.secret.slice(0, 16)}${'a'.repeat(48)}`, disabled.secret, 'garbage']) {
      const res = await report([key], {}, app, '198.51.100.9');
      expect(res.statusCode).toBe(202);
      bodies.add(JSON.stringify({ body: res.json(), type: res.headers['content-type'], cache: res.headers['cache-control'] }));
    }
    expect(bodies.size).toBe(1);
    // A disabled key stays as it was: no second history entry.
    const entries = await sql(url, 'SELECT operation FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [disabled.id]);
    expect(entries.map((e) => e.operation)).toEqual(['create']);
  });

  it('a secret a rotation replaced ends its grace period; the new secret keeps working', async () => {
    const k = await seedKey(app, { name: 'rev-rotated', roleIds: [READER] });
    const rotated = (await app.inject({ method: 'POST', url: `/api/v1/apikeys/${k.id}/rotate`, headers: { ...admin.headers, ...json }, payload: { gracePeriodSeconds: 3600 } })).json();
    expect((await whoami(k.secret, other)).statusCode).toBe(200);
    expect((await report([k.secret])).statusCode).toBe(202);
    for (const on of [app, other]) {
      expect((await whoami(k.secret, on)).json().code).toBe('API_KEY_INVALID');
      expect((await whoami(rotated.key, on)).statusCode).toBe(200);
    }
    const view = (await app.inject({ method: 'GET', url: `/api/v1/apikeys/${k.id}`, headers: admin.headers })).json();
    expect(view).toMatchObject({ isEnabled: true, previousKeyPrefix: null, previousKeyExpiresAt: null });
    const ops = await sql(url, 'SELECT operation FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [k.id]);
    expect(ops.map((e) => e.operation)).toEqual(['create', 'rotate', 'revoke']);
  });

  it('refuses malformed reports with a 400 naming the field, changing nothing', async () => {
    const before = await apiVisibleState(url);
    const cases: Array<[object, RegExp]> = [
      [{}, /^keys is required/],
      [{ keys: [] }, /^keys must list at least one key/],
      [{ keys: Array.from({ length: 101 }, randomKey) }, /^keys must list at most 100 keys per request/],
      [{ keys: 'jim_ak_x' }, /^keys must be/],
      [{ keys: [42] }, /^keys\[0\]/],
      [{ keys: [randomKey()], source: 'x'.repeat(901) }, /^source must have at most 900 characters/],
      [{ keys: [randomKey()], reporter: 'me' }, /reporter/],
    ];
    for (const [payload, detail] of cases) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys/revoke', headers: json, payload: payload as never, remoteAddress: '192.0.2.200' });
      expect(res.statusCode, JSON.stringify(payload).slice(0, 80)).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json().code).toBe('VALIDATION_FAILED');
      expect(res.json().detail).toMatch(detail);
    }
    expect(await apiVisibleState(url)).toEqual(before);
  });

  it('is limited per client address (429 beyond RATE_LIMIT_REVOKE_MAX)', async () => {
    const limited = await buildTestApp({ env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_REVOKE_MAX: '3', RATE_LIMIT_IP_MAX: '1000' } });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) codes.push((await report([randomKey()], {}, limited, '198.51.100.200')).statusCode);
    expect(codes).toEqual([202, 202, 202, 429]);
    const refused = await report([randomKey()], {}, limited, '198.51.100.200');
    expect(refused.json().code).toBe('RATE_LIMITED');
    expect(refused.json().detail).toMatch(/^Too many leaked-key reports from this address; retry in \d+ s\.$/);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect((await report([randomKey()], {}, limited, '198.51.100.201')).statusCode).toBe(202); // another address
    await limited.close();
  });

  it('revokes a leaked key whose prefix an attacker keeps locked with wrong secrets; wrong secrets in reports are security events', async () => {
    const limited = await buildTestApp({ env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PREFIX_MAX: '3', RATE_LIMIT_IP_MAX: '1000', RATE_LIMIT_REVOKE_MAX: '100' } });
    const k = await seedKey(limited, { name: 'rev-locked', roleIds: [READER] });
    const wrong = (i: number) => `${k.secret.slice(0, 16)}${String(i).repeat(48).slice(0, 48)}`;
    for (let i = 0; i < 6; i++) await limited.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': wrong(i) }, remoteAddress: `198.51.100.${i + 1}` });
    // Locked: the real secret is refused unverified now (it was never cached).
    expect((await limited.inject({ method: 'GET', url: '/api/v1/userinfo', headers: k.headers, remoteAddress: '192.0.2.77' })).json().code).toBe('API_KEY_INVALID');
    expect((await report([wrong(7), k.secret], {}, limited, '203.0.113.99')).statusCode).toBe(202);
    expect((await sql(url, 'SELECT is_enabled FROM api_keys WHERE id = $1', [k.id]))[0].is_enabled).toBe(false);
    await limited.services.securityEvents.flush();
    const events = await sql(url, "SELECT key_prefix, reason, count FROM security_events WHERE ip = '203.0.113.99'");
    expect(events).toEqual([{ key_prefix: k.secret.slice(0, 16), reason: 'API_KEY_INVALID', count: 1 }]);
    await limited.close();
  });

  it('writes no secret to the logs', async () => {
    const k = await seedKey(app, { name: 'rev-logs', roleIds: [READER] });
    logs.length = 0;
    await report([k.secret], { source: 'paste' });
    const text = logs.join('');
    expect(text).toContain('leaked-key report revoked keys');
    expect(text).not.toContain(k.secret);
    expect(text).not.toContain(k.secret.slice(16));
  });
});
