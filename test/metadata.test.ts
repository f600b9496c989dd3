// Key metadata: the owner's own JSON object, bounded in size and depth, returned by GET, kept by
// history — and left alone by JIM's Set-JIMApiKey, whose PUT carries JIM's fields only.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, apiVisibleState, json, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { JimModule, PsConnection } from './helpers/powershell.js';

let app: App;
let url: string;
let admin: SeededKey;
let port: number;
const connections: PsConnection[] = [];
beforeAll(async () => {
  url = (await testDatabase()).url;
  app = await buildTestApp();
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
  admin = await seedKey(app, { name: 'meta-admin', roleIds: [ADMIN] });
});
afterAll(() => connections.forEach((c) => c.close()));

const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, payload?: object) =>
  app.inject({ method, url: `/api/v1${path}`, headers: { ...admin.headers, ...(payload ? json : {}) }, payload: payload as never });

const META = { tenantId: 't-42', plan: 'pro', limits: { rps: 10, regions: ['eu', 'us'] }, note: 'Grüße 🚀' };

/** An object `depth` levels deep (the object itself is level 1). */
const nested = (depth: number): Record<string, unknown> => (depth === 1 ? { leaf: true } : { child: nested(depth - 1) });

describe('metadata', () => {
  it('is stored on create, returned by GET and the list, {} when none was given', async () => {
    const created = await call('POST', '/apikeys', { name: 'with-meta', roleIds: [READER], metadata: META });
    expect(created.statusCode).toBe(201);
    expect(created.json().metadata).toEqual(META);
    const id = created.json().id;
    expect((await call('GET', `/apikeys/${id}`)).json().metadata).toEqual(META);
    expect((await call('GET', '/apikeys?name=with-meta')).json()[0].metadata).toEqual(META);
    expect((await sql(url, 'SELECT metadata FROM api_keys WHERE id = $1', [id]))[0].metadata).toEqual(META);
    const plain = await call('POST', '/apikeys', { name: 'no-meta' });
    expect(plain.json().metadata).toEqual({});
  });

  it('accepts exactly 4 KiB and 5 levels; refuses one byte or one level more, arrays and scalars — naming the field, changing nothing', async () => {
    const pad = (bytes: number) => ({ p: 'x'.repeat(bytes - JSON.stringify({ p: '' }).length) });
    expect(Buffer.byteLength(JSON.stringify(pad(4096)))).toBe(4096);
    expect((await call('POST', '/apikeys', { name: 'edge-size', metadata: pad(4096) })).statusCode).toBe(201);
    expect((await call('POST', '/apikeys', { name: 'edge-depth', metadata: nested(5) })).statusCode).toBe(201);
    const before = await apiVisibleState(url);
    const cases: Array<[unknown, RegExp]> = [
      [pad(4097), /^metadata must be at most 4096 bytes as compact JSON$/],
      [{ p: 'é'.repeat(2100) }, /metadata must be at most 4096 bytes/], // bytes, not characters
      [nested(6), /^metadata must nest at most 5 levels deep/],
      [['a'], /^metadata must be a JSON object/],
      ['tenant', /^metadata must be a JSON object/],
      [42, /^metadata must be a JSON object/],
    ];
    for (const [metadata, detail] of cases) {
      const res = await call('POST', '/apikeys', { name: 'too-much', metadata });
      expect(res.statusCode).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().code).toBe('VALIDATION_FAILED');
      expect(res.json().detail).toMatch(detail);
    }
    const id = (await call('POST', '/apikeys', { name: 'patch-target' })).json().id;
    const after = await apiVisibleState(url);
    const bad = await call('PATCH', `/apikeys/${id}`, { metadata: nested(6) });
    expect(bad.statusCode).toBe(400);
    expect(await apiVisibleState(url)).toEqual(after);
    expect(after.length).toBe(before.length + 1);
  });

  it('PATCH replaces it whole; null clears it to {}; a PUT without it leaves it alone', async () => {
    const id = (await call('POST', '/apikeys', { name: 'patch-meta', metadata: META })).json().id;
    expect((await call('PATCH', `/apikeys/${id}`, { metadata: { plan: 'free' } })).json().metadata).toEqual({ plan: 'free' });
    expect((await call('PATCH', `/apikeys/${id}`, { description: 'only this' })).json().metadata).toEqual({ plan: 'free' });
    expect((await call('PUT', `/apikeys/${id}`, { name: 'patch-meta', roleIds: null, isEnabled: true })).json().metadata).toEqual({ plan: 'free' });
    expect((await call('PUT', `/apikeys/${id}`, { name: 'patch-meta', roleIds: null, isEnabled: true, metadata: { plan: 'team' } })).json().metadata).toEqual({
      plan: 'team',
    });
    expect((await call('PATCH', `/apikeys/${id}`, { metadata: null })).json().metadata).toEqual({});
  });

  it('Set-JIMApiKey (GET, merge, PUT of JIM\'s fields only, as PowerShell sends it) does not erase it, nor allowedCidrs, rateLimit or a grace period', async () => {
    const beyond = { allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'], rateLimit: { limit: 100, windowSeconds: 60 } };
    const id = (await call('POST', '/apikeys', { name: 'jim-managed', roleIds: [READER], metadata: META, ...beyond })).json().id;
    const rotated = (await call('POST', `/apikeys/${id}/rotate`, { gracePeriodSeconds: 3600 })).json();
    const http = new PsConnection(port, admin.secret, '\r\n');
    connections.push(http);
    const jim = new JimModule(http);
    await jim.set(id, { description: 'renamed by PowerShell', changeReason: 'CHG-7' });
    await jim.set(id, { disable: true });
    const put = http.sent.filter((r) => r.method === 'PUT');
    expect(put).toHaveLength(2);
    for (const r of put) {
      expect(r.body).toContain('\r\n'); // ConvertTo-Json, as it goes over the wire
      expect(Object.keys(JSON.parse(r.body!)).sort()).toEqual(expect.arrayContaining(['name', 'description', 'roleIds', 'isEnabled', 'expiresAt']));
      for (const field of ['metadata', 'allowedCidrs', 'rateLimit', 'previousKey']) expect(r.body).not.toContain(field);
    }
    const key = (await call('GET', `/apikeys/${id}`)).json();
    expect(key).toMatchObject({ description: 'renamed by PowerShell', isEnabled: false, metadata: META, ...beyond });
    expect(key).toMatchObject({ previousKeyPrefix: rotated.previousKeyPrefix, previousKeyExpiresAt: rotated.previousKeyExpiresAt });
    expect((await sql(url, 'SELECT metadata FROM api_keys WHERE id = $1', [id]))[0].metadata).toEqual(META);
  });

  it('is part of the history snapshot, and compare shows its change', async () => {
    const id = (await call('POST', '/apikeys', { name: 'hist-meta', metadata: { plan: 'free' } })).json().id;
    await call('PATCH', `/apikeys/${id}`, { metadata: { plan: 'pro' } });
    const history = (await call('GET', `/apikeys/${id}/change-history`)).json();
    expect(history.map((e: { snapshot: { metadata: unknown } }) => e.snapshot.metadata)).toEqual([{ plan: 'pro' }, { plan: 'free' }]);
    const diff = (await call('GET', `/apikeys/${id}/change-history/compare?fromVersion=1&toVersion=2`)).json();
    expect(diff.changes).toEqual([{ field: 'metadata', from: { plan: 'free' }, to: { plan: 'pro' } }]);
  });

  it('a change made behind the server\'s back bumps the version (caches re-read it)', async () => {
    const key = await seedKey(app, { name: 'sql-meta' });
    const [{ version }] = await sql(url, 'SELECT version FROM api_keys WHERE id = $1', [key.id]);
    await sql(url, `UPDATE api_keys SET metadata = '{"x": 1}' WHERE id = $1`, [key.id]);
    expect((await sql(url, 'SELECT version FROM api_keys WHERE id = $1', [key.id]))[0].version).toBe((version as number) + 1);
  });
});
