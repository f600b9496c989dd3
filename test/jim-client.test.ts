// The HTTP sequences JIM's PowerShell cmdlets send, replayed byte for byte where it matters.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let dbUrl: string;
let admin: SeededKey;

// PowerShell's Invoke-RestMethod with -ContentType sends it on every method.
const ps = () => ({ 'x-api-key': admin.secret, 'content-type': 'application/json; charset=utf-8', 'user-agent': 'Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1' });

beforeAll(async () => {
  app = await buildTestApp();
  dbUrl = (await testDatabase()).url;
  admin = await seedKey(app, { name: 'jim-admin', roleIds: [ADMIN] });
});

async function newJimApiKey(body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: ps(), payload: JSON.stringify(body) });
}

describe('New-JIMApiKey', () => {
  it('POST with name, roleIds always, and an expiry in the "o" format', async () => {
    const res = await newJimApiKey({
      name: 'Deploy pipeline',
      roleIds: [READER],
      description: 'made by New-JIMApiKey',
      expiresAt: '2099-02-24T10:00:00.0000000Z',
      changeReason: 'CHG-1',
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ name: 'Deploy pipeline', expiresAt: '2099-02-24T10:00:00.000Z', roles: [{ id: READER, name: 'Reader' }] });
    expect(res.json().key).toMatch(/^jim_ak_[0-9a-f]{64}$/);
  });

  it('an empty roleIds array is a key with no roles', async () => {
    const res = await newJimApiKey({ name: 'No roles', roleIds: [] });
    expect(res.statusCode).toBe(201);
    expect(res.json().roles).toEqual([]);
  });
});

describe('Get-JIMApiKey', () => {
  it('-Id gets one; without -Id, the list is a bare array the client filters with -like', async () => {
    const created = (await newJimApiKey({ name: 'Get target', roleIds: [] })).json();
    const one = await app.inject({ method: 'GET', url: `/api/v1/apikeys/${created.id}`, headers: ps() });
    expect(one.statusCode).toBe(200);
    expect(one.json().name).toBe('Get target');
    const all = await app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: ps() });
    expect(Array.isArray(all.json())).toBe(true);
    expect(all.json().some((k: { id: string }) => k.id === created.id)).toBe(true);
  });
});

describe('Set-JIMApiKey', () => {
  /** What the cmdlet does: GET, merge the parameters given, PUT the whole object. */
  async function setJimApiKey(id: string, params: { name?: string; description?: string; roleIds?: number[]; enable?: boolean; disable?: boolean; expiresAt?: string | null }) {
    const current = (await app.inject({ method: 'GET', url: `/api/v1/apikeys/${id}`, headers: ps() })).json();
    const body: Record<string, unknown> = {
      name: params.name ?? current.name,
      description: params.description ?? current.description,
      roleIds: params.roleIds ?? current.roles.map((r: { id: number }) => r.id),
      isEnabled: params.enable ? true : params.disable ? false : current.isEnabled,
      expiresAt: params.expiresAt !== undefined ? params.expiresAt : current.expiresAt,
    };
    return app.inject({ method: 'PUT', url: `/api/v1/apikeys/${id}`, headers: ps(), payload: JSON.stringify(body) });
  }

  it('-Disable keeps everything else', async () => {
    const created = (await newJimApiKey({ name: 'Set target', roleIds: [READER], description: 'keep', expiresAt: '2099-01-01T00:00:00.0000000Z' })).json();
    const res = await setJimApiKey(created.id, { disable: true });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ name: 'Set target', description: 'keep', isEnabled: false, expiresAt: '2099-01-01T00:00:00.000Z', roles: [{ id: READER, name: 'Reader' }] });
  });

  it('-ExpiresAt $null sends expiresAt: null and removes the expiry', async () => {
    const created = (await newJimApiKey({ name: 'Expiry target', roleIds: [], expiresAt: '2099-01-01T00:00:00.0000000Z' })).json();
    const res = await setJimApiKey(created.id, { expiresAt: null });
    expect(res.json().expiresAt).toBeNull();
  });

  it('a round trip of GET → PUT with nothing changed keeps the key as it was (but for version and updatedAt)', async () => {
    const created = (await newJimApiKey({ name: 'Round trip', roleIds: [READER], description: 'd', expiresAt: '2099-05-05T05:05:05.0000000Z' })).json();
    const res = await setJimApiKey(created.id, {});
    const { updatedAt: _u1, key: _k, ...before } = created;
    const { updatedAt: _u2, ...after } = res.json();
    expect(after).toEqual(before);
  });
});

describe('Remove-JIMApiKey', () => {
  it('GET first, then DELETE with ?changeReason= URI-escaped; -PassThru shows the object from the GET', async () => {
    const created = (await newJimApiKey({ name: 'Remove target', roleIds: [] })).json();
    const got = await app.inject({ method: 'GET', url: `/api/v1/apikeys/${created.id}`, headers: ps() });
    expect(got.statusCode).toBe(200);
    const { key: _secret, ...view } = created;
    expect(got.json()).toEqual(view); // what -PassThru emits
    const reason = 'Decommissioned: server "web-01" & friends / 100%';
    // As Invoke-RestMethod sends it: the JSON content type, and an explicit empty body.
    const del = await app.inject({
      method: 'DELETE',
      url: `/api/v1/apikeys/${created.id}?changeReason=${encodeURIComponent(reason)}`,
      headers: { ...ps(), 'content-length': '0' },
      payload: '',
    });
    expect(del.statusCode).toBe(204);
    const [row] = await sql(dbUrl, "SELECT change_reason FROM api_key_changes WHERE api_key_id = $1 AND operation = 'delete'", [created.id]);
    expect(row.change_reason).toBe(reason);
  });

  it('a failed GET (already gone) is a 404 the cmdlet reports as "API Key not found"', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/apikeys/11111111-1111-4111-8111-111111111111', headers: ps() });
    expect(res.statusCode).toBe(404);
    expect(res.json().message).toBe('API key not found.');
  });
});
