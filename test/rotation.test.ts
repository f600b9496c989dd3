// Rotation that keeps the key's id: a new secret, the replaced one accepted for a grace period
// (never past the key's expiry), then refused like any wrong secret — by this instance's cache,
// by a second instance's, and on a fresh read; history, the escalation guard, 409 for disabled
// and expired keys, and the secret in no response but the rotation's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, apiVisibleState, json, OPERATOR, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { until } from './helpers/until.js';

let app: App;
let other: App;
let url: string;
let admin: SeededKey;
beforeAll(async () => {
  url = (await testDatabase()).url;
  app = await buildTestApp();
  other = await buildTestApp(); // a second instance on the same database
  admin = await seedKey(app, { name: 'rot-admin', roleIds: [ADMIN] });
});
afterAll(async () => {
  await other?.close();
});

const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, payload?: object, headers: Record<string, string> = admin.headers, on: App = app) =>
  on.inject({ method, url: `/api/v1${path}`, headers: { ...headers, ...(payload ? json : {}) }, payload: payload as never });
const whoami = (secret: string, on: App = app) => on.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': secret } });

describe('POST /apikeys/{id}/rotate', () => {
  it('issues a new secret for the same id; with no grace the old one is refused at once, on both instances', async () => {
    const key = await seedKey(app, { name: 'rot-plain', roleIds: [READER] });
    // Both instances have the old secret cached.
    expect((await whoami(key.secret)).statusCode).toBe(200);
    expect((await whoami(key.secret, other)).statusCode).toBe(200);
    const res = await call('POST', `/apikeys/${key.id}/rotate`, { changeReason: 'CHG-1: yearly' });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body.id).toBe(key.id);
    expect(body.key).toMatch(/^jim_ak_[0-9a-f]{64}$/);
    expect(body.key).not.toBe(key.secret);
    expect(body.keyPrefix).toBe(body.key.slice(0, 16));
    expect(body.previousKeyPrefix).toBeNull();
    expect(body.previousKeyExpiresAt).toBeNull();
    expect(res.headers.etag).toBeDefined();
    expect(res.headers.location).toBe(`/api/v1/apikeys/${key.id}`);
    expect(res.headers['cache-control']).toBe('no-store');
    for (const on of [app, other]) {
      const old = await whoami(key.secret, on);
      expect(old.statusCode).toBe(401);
      expect(old.json().code).toBe('API_KEY_INVALID');
      const fresh = await whoami(body.key, on);
      expect(fresh.statusCode).toBe(200);
      expect(fresh.json().id).toBe(key.id);
    }
    // Stored: the new prefix and an argon2id hash, never a secret.
    const [row] = await sql(url, 'SELECT key_prefix, hash, previous_hash, previous_key_prefix FROM api_keys WHERE id = $1', [key.id]);
    expect(row.key_prefix).toBe(body.keyPrefix);
    expect(row.hash).toMatch(/^\$argon2id\$/);
    expect(row.previous_hash).toBeNull();
    expect(JSON.stringify(row)).not.toContain(body.key);
    // The new secret is in this response only.
    const got = await call('GET', `/apikeys/${key.id}`);
    expect(got.payload).not.toContain(body.key);
    expect(got.json().keyPrefix).toBe(body.keyPrefix);
  });

  it('keeps the old secret working for the grace period, shows it, then refuses it on both instances (and fresh reads)', async () => {
    const key = await seedKey(app, { name: 'rot-grace', roleIds: [READER] });
    expect((await whoami(key.secret)).statusCode).toBe(200);
    expect((await whoami(key.secret, other)).statusCode).toBe(200);
    const before = Date.now();
    const res = await call('POST', `/apikeys/${key.id}/rotate`, { gracePeriodSeconds: 2 });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body.previousKeyPrefix).toBe(key.secret.slice(0, 16));
    const end = Date.parse(body.previousKeyExpiresAt);
    expect(end).toBeGreaterThanOrEqual(before + 2000);
    expect(end).toBeLessThanOrEqual(Date.now() + 2000);
    // The list and GET know both prefixes while the grace runs.
    const listed = (await call('GET', '/apikeys?name=rot-grace')).json()[0];
    expect(listed.previousKeyPrefix).toBe(key.secret.slice(0, 16));
    expect(listed.previousKeyExpiresAt).toBe(body.previousKeyExpiresAt);
    for (const on of [app, other]) {
      expect((await whoami(key.secret, on)).statusCode).toBe(200);
      expect((await whoami(body.key, on)).statusCode).toBe(200);
    }
    // A third process that never saw the old secret verifies it from the database too.
    const third = await buildTestApp();
    expect((await whoami(key.secret, third)).statusCode).toBe(200);
    await until(() => Date.now() > end + 50, 5000);
    for (const on of [app, other, third]) {
      const old = await whoami(key.secret, on);
      expect(old.statusCode).toBe(401);
      expect(old.json().code).toBe('API_KEY_INVALID');
      expect((await whoami(body.key, on)).statusCode).toBe(200);
    }
    const fourth = await buildTestApp();
    expect((await whoami(key.secret, fourth)).statusCode).toBe(401);
    await third.close();
    await fourth.close();
    const after = (await call('GET', `/apikeys/${key.id}`)).json();
    expect(after.previousKeyPrefix).toBeNull();
    expect(after.previousKeyExpiresAt).toBeNull();
  });

  it('rotating again during a grace period ends the previous one at once', async () => {
    const key = await seedKey(app, { name: 'rot-twice', roleIds: [READER] });
    const first = (await call('POST', `/apikeys/${key.id}/rotate`, { gracePeriodSeconds: 3600 })).json();
    expect((await whoami(key.secret)).statusCode).toBe(200);
    expect((await whoami(key.secret, other)).statusCode).toBe(200);
    const second = await call('POST', `/apikeys/${key.id}/rotate`, { gracePeriodSeconds: 3600 });
    expect(second.statusCode).toBe(201);
    expect(second.json().previousKeyPrefix).toBe(first.keyPrefix);
    for (const on of [app, other]) {
      expect((await whoami(key.secret, on)).statusCode).toBe(401); // the original: gone at once
      expect((await whoami(first.key, on)).statusCode).toBe(200); // the first rotation's: in its grace
      expect((await whoami(second.json().key, on)).statusCode).toBe(200);
    }
  });

  it('never extends a grace period past the key\'s own expiry', async () => {
    const expiresAt = new Date(Date.now() + 60_000).toISOString();
    const key = await seedKey(app, { name: 'rot-expiring', roleIds: [READER], expiresAt });
    const res = await call('POST', `/apikeys/${key.id}/rotate`, { gracePeriodSeconds: 86_400 });
    expect(res.statusCode).toBe(201);
    expect(res.json().previousKeyExpiresAt).toBe(new Date(expiresAt).toISOString());
    expect(res.json().expiresAt).toBe(new Date(expiresAt).toISOString());
  });

  it('accepts an absent body; records the rotation in history (operation rotate, no secret, no hash)', async () => {
    const key = await seedKey(app, { name: 'rot-history', roleIds: [READER] });
    const res = await app.inject({ method: 'POST', url: `/api/v1/apikeys/${key.id}/rotate`, headers: admin.headers });
    expect(res.statusCode).toBe(201);
    const history = (await call('GET', `/apikeys/${key.id}/change-history`)).json();
    expect(history.map((h: { operation: string }) => h.operation).sort()).toEqual(['create', 'rotate']);
    const last = history.find((h: { operation: string }) => h.operation === 'rotate');
    expect(last.actor).toMatchObject({ type: 'apiKey', id: admin.id });
    expect(last.snapshot.keyPrefix).toBe(res.json().keyPrefix);
    const raw = JSON.stringify(await sql(url, 'SELECT * FROM api_key_changes WHERE api_key_id = $1', [key.id]));
    expect(raw).not.toContain(res.json().key);
    expect(raw).not.toContain('$argon2');
  });

  it('refuses disabled and expired keys with 409, bad grace periods with 400 — changing nothing', async () => {
    const disabled = await seedKey(app, { name: 'rot-disabled', roleIds: [READER], isEnabled: false });
    const expired = await seedKey(app, { name: 'rot-expired', roleIds: [READER] });
    await sql(url, "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1", [expired.id]);
    const before = await apiVisibleState(url);
    const d = await call('POST', `/apikeys/${disabled.id}/rotate`, {});
    expect(d.statusCode).toBe(409);
    expect(d.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(d.json()).toMatchObject({ code: 'API_KEY_NOT_ROTATABLE', detail: expect.stringMatching(/disabled/) });
    const e = await call('POST', `/apikeys/${expired.id}/rotate`, {});
    expect(e.statusCode).toBe(409);
    expect(e.json().detail).toMatch(/expired/);
    const live = await seedKey(app, { name: 'rot-bad-input', roleIds: [READER] });
    const afterSeed = await apiVisibleState(url);
    for (const [payload, detail] of [
      [{ gracePeriodSeconds: -1 }, /^gracePeriodSeconds must be a whole number of seconds from 0 to 86400/],
      [{ gracePeriodSeconds: 86_401 }, /^gracePeriodSeconds must be a whole number of seconds from 0 to 86400/],
      [{ gracePeriodSeconds: 1.5 }, /^gracePeriodSeconds must be a whole number/],
      [{ gracePeriodSeconds: '60' }, /^gracePeriodSeconds must be a whole number/],
      [{ grace: 60 }, /grace/],
    ] as const) {
      const res = await call('POST', `/apikeys/${live.id}/rotate`, payload);
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.json().code).toBe('VALIDATION_FAILED');
      expect(res.json().detail).toMatch(detail);
    }
    expect((await call('POST', '/apikeys/00000000-0000-0000-0000-000000000000/rotate', {})).json().code).toBe('API_KEY_NOT_FOUND');
    expect(await apiVisibleState(url)).toEqual(afterSeed);
    expect(before.length + 1).toBe(afterSeed.length);
  });

  it('applies the escalation guard: an Operator cannot rotate an Administrator key; If-Match is honoured', async () => {
    const operator = await seedKey(app, { name: 'rot-operator', roleIds: [OPERATOR] });
    const target = await seedKey(app, { name: 'rot-target-admin', roleIds: [ADMIN] });
    const res = await call('POST', `/apikeys/${target.id}/rotate`, {}, operator.headers);
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('FORBIDDEN');
    expect((await whoami(target.secret)).statusCode).toBe(200);
    const reader = await seedKey(app, { name: 'rot-reader-only', roleIds: [READER] });
    expect((await call('POST', `/apikeys/${reader.id}/rotate`, {}, reader.headers)).statusCode).toBe(403); // no apikeys.write
    const etag = (await call('GET', `/apikeys/${reader.id}`)).headers.etag as string;
    expect((await call('POST', `/apikeys/${reader.id}/rotate`, {}, { ...admin.headers, 'if-match': '"999"' })).statusCode).toBe(412);
    const ok = await call('POST', `/apikeys/${reader.id}/rotate`, {}, { ...admin.headers, 'if-match': etag });
    expect(ok.statusCode).toBe(201);
    expect(ok.headers.etag).not.toBe(etag);
  });

  it('a caller whose key expires cannot rotate a key that outlives it (a new secret is a new credential)', async () => {
    const hour = new Date(Date.now() + 3_600_000).toISOString();
    const brief = await seedKey(app, { name: 'rot-brief-operator', roleIds: [OPERATOR], expiresAt: hour });
    const forever = await seedKey(app, { name: 'rot-forever', roleIds: [READER] });
    const refused = await call('POST', `/apikeys/${forever.id}/rotate`, {}, brief.headers);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().detail).toMatch(/^Your key expires at .*: it cannot give a key no expiry/);
    expect((await whoami(forever.secret)).statusCode).toBe(200);
    const soon = await seedKey(app, { name: 'rot-soon', roleIds: [READER], expiresAt: new Date(Date.now() + 1_800_000).toISOString() });
    expect((await call('POST', `/apikeys/${soon.id}/rotate`, {}, brief.headers)).statusCode).toBe(201);
  });

  it('a replaced secret in its grace period cannot rotate its own key again; the new secret can', async () => {
    const self = await seedKey(app, { name: 'rot-self', roleIds: [ADMIN] });
    const rotated = (await call('POST', `/apikeys/${self.id}/rotate`, { gracePeriodSeconds: 3600 }, self.headers)).json();
    expect(rotated.key).toBeDefined();
    const again = await call('POST', `/apikeys/${self.id}/rotate`, {}, self.headers); // the old secret
    expect(again.statusCode).toBe(403);
    expect(again.json().detail).toMatch(/replaced by a rotation/);
    expect((await whoami(rotated.key)).statusCode).toBe(200);
    const other = await seedKey(app, { name: 'rot-self-other', roleIds: [READER] });
    expect((await call('POST', `/apikeys/${other.id}/rotate`, {}, self.headers)).statusCode).toBe(201); // other keys: as before
    expect((await call('POST', `/apikeys/${self.id}/rotate`, {}, { 'x-api-key': rotated.key })).statusCode).toBe(201);
  });
});
