// Change history: one versioned entry per change, with actor, reason and snapshot, readable
// after the key is gone.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, json, OPERATOR, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let admin: SeededKey;
let operator: SeededKey;

beforeAll(async () => {
  app = await buildTestApp();
  admin = await seedKey(app, { name: 'history-admin', roleIds: [ADMIN] });
  operator = await seedKey(app, { name: 'history-operator', roleIds: [OPERATOR] });
});

const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, key: SeededKey, payload?: object) =>
  app.inject({ method, url, headers: { ...key.headers, ...(payload ? json : {}) }, payload });

describe('change history', () => {
  it('records create → PATCH → PUT → disable → delete with versions, actors, reasons and snapshots', async () => {
    const created = (await call('POST', '/api/v1/apikeys', admin, { name: 'tracked', roleIds: [READER], changeReason: 'new service' })).json();
    const url = `/api/v1/apikeys/${created.id}`;
    expect((await call('PATCH', url, operator, { description: 'v2', changeReason: 'describe it' })).statusCode).toBe(200);
    expect((await call('PUT', url, admin, { name: 'tracked-2', roleIds: [READER, OPERATOR], isEnabled: true, expiresAt: '2099-01-01T00:00:00Z' })).statusCode).toBe(200);
    // A rejected PATCH writes nothing.
    expect((await call('PATCH', url, admin, { roleIds: [42] })).statusCode).toBe(400);
    expect((await call('PATCH', url, operator, { isEnabled: false, changeReason: 'pause' })).statusCode).toBe(200);
    expect((await call('DELETE', `${url}?changeReason=${encodeURIComponent('retired')}`, admin)).statusCode).toBe(204);

    const res = await call('GET', `${url}/change-history`, admin);
    expect(res.statusCode).toBe(200);
    const entries = res.json();
    expect(entries.map((e: { version: number; operation: string }) => [e.version, e.operation])).toEqual([
      [5, 'delete'],
      [4, 'update'],
      [3, 'update'],
      [2, 'update'],
      [1, 'create'],
    ]);
    expect(entries.map((e: { changeReason: string | null }) => e.changeReason)).toEqual(['retired', 'pause', null, 'describe it', 'new service']);
    expect(entries[1].actor).toEqual({ type: 'apiKey', id: operator.id, name: 'history-operator' });
    expect(entries[0].actor).toEqual({ type: 'apiKey', id: admin.id, name: 'history-admin' });
    expect(entries[4].snapshot).toEqual({
      name: 'tracked',
      description: null,
      keyPrefix: created.keyPrefix,
      roles: [{ id: READER, name: 'Reader' }],
      isEnabled: true,
      isInfrastructureKey: false,
      expiresAt: null,
      metadata: {},
      allowedCidrs: null,
      rateLimit: null,
    });
    expect(entries[0].snapshot).toMatchObject({ name: 'tracked-2', isEnabled: false }); // the key as it was when deleted
    expect(new Date(entries[0].changedAt).getTime()).toBeGreaterThanOrEqual(new Date(entries[4].changedAt).getTime());
    expect(res.body).not.toMatch(/argon2|"hash"/);
    expect(res.body).not.toContain(created.key.slice(16));

    const v3 = await call('GET', `${url}/change-history/3`, admin);
    expect(v3.json()).toEqual(entries[2]);

    const cmp = await call('GET', `${url}/change-history/compare?fromVersion=1&toVersion=4`, admin);
    expect(cmp.json()).toEqual({
      fromVersion: 1,
      toVersion: 4,
      changes: [
        { field: 'name', from: 'tracked', to: 'tracked-2' },
        // (the PUT, a full replacement without description, set it back to null)
        { field: 'roles', from: [{ id: READER, name: 'Reader' }], to: [{ id: OPERATOR, name: 'Operator' }, { id: READER, name: 'Reader' }] },
        { field: 'isEnabled', from: true, to: false },
        { field: 'expiresAt', from: null, to: '2099-01-01T00:00:00.000Z' },
      ],
    });
    const same = await call('GET', `${url}/change-history/compare?fromVersion=2&toVersion=2`, admin);
    expect(same.json().changes).toEqual([]);
    const desc = await call('GET', `${url}/change-history/compare?fromVersion=1&toVersion=2`, admin);
    expect(desc.json().changes).toEqual([{ field: 'description', from: null, to: 'v2' }]);

    const { url: dbUrl } = await testDatabase();
    const snapshots = await sql(dbUrl, 'SELECT snapshot FROM api_key_changes');
    expect(JSON.stringify(snapshots)).not.toMatch(/argon2|"hash"/);
  });

  it('numbers versions 1, 2, 3… even when the row version moved for a direct-SQL change', async () => {
    const created = (await call('POST', '/api/v1/apikeys', admin, { name: 'gapless', roleIds: [READER] })).json();
    const { url: dbUrl } = await testDatabase();
    await sql(dbUrl, `UPDATE roles SET name = name || '' WHERE id = ${READER}`); // a no-op rename still fires the trigger
    await sql(dbUrl, 'UPDATE api_keys SET description = $1 WHERE id = $2', ['by hand', created.id]);
    expect((await call('PATCH', `/api/v1/apikeys/${created.id}`, admin, { name: 'gapless-2' })).statusCode).toBe(200);
    const versions = (await call('GET', `/api/v1/apikeys/${created.id}/change-history`, admin)).json().map((e: { version: number }) => e.version);
    expect(versions).toEqual([2, 1]);
    expect((await call('GET', `/api/v1/apikeys/${created.id}/change-history/compare?fromVersion=1&toVersion=2`, admin)).statusCode).toBe(200);
  });

  it('pages newest first with limit, cursor and Link', async () => {
    const created = (await call('POST', '/api/v1/apikeys', admin, { name: 'paged' })).json();
    const url = `/api/v1/apikeys/${created.id}`;
    for (let i = 0; i < 6; i++) await call('PATCH', url, admin, { description: `d${i}` });
    const versions: number[] = [];
    let next: string | null = `${url}/change-history?limit=3`;
    while (next) {
      const res = await app.inject({ method: 'GET', url: next, headers: admin.headers });
      expect(res.statusCode).toBe(200);
      versions.push(...res.json().map((e: { version: number }) => e.version));
      const link = res.headers.link as string | undefined;
      next = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1] : null;
    }
    expect(versions).toEqual([7, 6, 5, 4, 3, 2, 1]);
  });

  it('answers 404 for an unknown key or version, 400 for bad input, and refuses a cursor from another key', async () => {
    const created = (await call('POST', '/api/v1/apikeys', admin, { name: 'errors' })).json();
    const url = `/api/v1/apikeys/${created.id}/change-history`;
    expect((await call('GET', '/api/v1/apikeys/12345678-1234-1234-1234-123456789abc/change-history', admin)).statusCode).toBe(404);
    const missing = await call('GET', `${url}/9`, admin);
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('VERSION_NOT_FOUND');
    expect((await call('GET', `${url}/compare?fromVersion=1&toVersion=9`, admin)).statusCode).toBe(404);
    for (const bad of [`${url}/0`, `${url}/abc`, `${url}/compare?fromVersion=1`, `${url}?limit=0`, `${url}?cursor=abc`]) {
      const res = await call('GET', bad, admin);
      expect(res.statusCode, bad).toBe(400);
      expect(res.headers['content-type']).toBe('application/problem+json');
    }
    const other = (await call('POST', '/api/v1/apikeys', admin, { name: 'other' })).json();
    await call('PATCH', `/api/v1/apikeys/${other.id}`, admin, { description: 'x' });
    const page = await call('GET', `/api/v1/apikeys/${other.id}/change-history?limit=1`, admin);
    const cursor = new URL(/^<([^>]+)>/.exec(page.headers.link as string)![1], 'http://x').searchParams.get('cursor');
    expect((await call('GET', `${url}?limit=1&cursor=${cursor}`, admin)).statusCode).toBe(400);
  });

  it('needs audit.read: Reader and Operator have it, a key without roles does not', async () => {
    const created = (await call('POST', '/api/v1/apikeys', admin, { name: 'audited' })).json();
    const url = `/api/v1/apikeys/${created.id}/change-history`;
    const reader = await seedKey(app, { roleIds: [READER] });
    const none = await seedKey(app, { roleIds: [] });
    expect((await call('GET', url, reader)).statusCode).toBe(200);
    expect((await call('GET', url, operator)).statusCode).toBe(200);
    const denied = await call('GET', url, none);
    expect(denied.statusCode).toBe(403);
    expect(denied.json().detail).toContain('audit.read');
  });
});
