import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, json, OPERATOR, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let dbUrl: string;
let admin: SeededKey;

beforeAll(async () => {
  app = await buildTestApp();
  dbUrl = (await testDatabase()).url;
  admin = await seedKey(app, { name: 'contract-admin', roleIds: [ADMIN] });
});

const KEY_FIELDS = [
  'metadata',
  'allowedCidrs',
  'rateLimit',
  'previousKeyPrefix',
  'previousKeyExpiresAt',
  'createdAt',
  'description',
  'expiresAt',
  'id',
  'isEnabled',
  'isInfrastructureKey',
  'keyPrefix',
  'lastUsedAt',
  'lastUsedFromIp',
  'name',
  'roles',
  'updatedAt',
].sort();

async function create(body: Record<string, unknown>, headers = admin.headers) {
  return app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...headers, ...json }, payload: body });
}

describe('GET /api/v1/userinfo', () => {
  it('describes the calling key', async () => {
    const reader = await seedKey(app, { name: 'who-am-i', roleIds: [READER] });
    const res = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: reader.headers });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      id: reader.id,
      name: 'who-am-i',
      keyPrefix: reader.secret.slice(0, 16),
      roles: [{ id: READER, name: 'Reader' }],
      permissions: ['apikeys.read', 'audit.read', 'roles.read'],
      authMethod: 'api_key',
    });
  });
});

describe('GET /api/v1/roles', () => {
  it('lists the built-in roles with their permissions', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/roles', headers: admin.headers });
    expect(res.statusCode).toBe(200);
    expect(res.json().map(({ id, name, builtIn, permissions }: Record<string, unknown>) => ({ id, name, builtIn, permissions }))).toEqual([
      {
        id: 1,
        name: 'Administrator',
        builtIn: true,
        permissions: ['*', 'apikeys.read', 'apikeys.verify', 'apikeys.write', 'audit.read', 'metrics.read', 'roles.read', 'roles.write', 'webhooks.read', 'webhooks.write'],
      },
      { id: 2, name: 'Operator', builtIn: true, permissions: ['apikeys.read', 'apikeys.verify', 'apikeys.write', 'audit.read', 'roles.read'] },
      { id: 3, name: 'Reader', builtIn: true, permissions: ['apikeys.read', 'audit.read', 'roles.read'] },
      { id: 4, name: 'Monitoring', builtIn: true, permissions: ['metrics.read'] },
      { id: 5, name: 'Verifier', builtIn: true, permissions: ['apikeys.verify'] },
    ]);
    for (const role of res.json()) expect(Object.keys(role).sort()).toEqual(['builtIn', 'createdAt', 'description', 'id', 'name', 'permissions', 'updatedAt']);
  });
});

describe('POST /api/v1/apikeys', () => {
  it('creates a key: 201, Location, ETag, the secret once, only an argon2id hash stored', async () => {
    const res = await create({
      name: '  build-agent  ',
      description: 'CI\tagent\nline two',
      roleIds: [READER, OPERATOR],
      expiresAt: '2099-02-24T10:00:00.0000000Z',
      changeReason: 'ticket 42',
    });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(Object.keys(body).sort()).toEqual([...KEY_FIELDS, 'key'].sort());
    expect(body).toMatchObject({
      name: 'build-agent',
      description: 'CI\tagent\nline two',
      roles: [
        { id: OPERATOR, name: 'Operator' },
        { id: READER, name: 'Reader' },
      ],
      isEnabled: true,
      isInfrastructureKey: false,
      expiresAt: '2099-02-24T10:00:00.000Z',
      lastUsedAt: null,
      lastUsedFromIp: null,
    });
    expect(body.key).toMatch(/^jim_ak_[0-9a-f]{64}$/);
    expect(body.keyPrefix).toBe(body.key.slice(0, 16));
    expect(body.createdAt).toBe(body.updatedAt);
    expect(res.headers.location).toBe(`/api/v1/apikeys/${body.id}`);
    expect(res.headers.etag).toBe('"1"');
    expect(res.headers['cache-control']).toBe('no-store');

    const [row] = await sql<{ hash: string; key_prefix: string }>(dbUrl, 'SELECT hash, key_prefix FROM api_keys WHERE id = $1', [body.id]);
    expect(row.hash).toMatch(/^\$argon2id\$v=19\$/);
    expect(row.hash).not.toContain(body.key.slice(16));
    expect(row.key_prefix).toBe(body.keyPrefix);
    const [change] = await sql(dbUrl, 'SELECT version, operation, change_reason, actor_type, actor_id FROM api_key_changes WHERE api_key_id = $1', [body.id]);
    expect(change).toEqual({ version: 1, operation: 'create', change_reason: 'ticket 42', actor_type: 'apiKey', actor_id: admin.id });

    // The new key works at once.
    const me = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': body.key } });
    expect(me.json().id).toBe(body.id);
  });

  it('defaults: no roles, enabled, no expiry, no description', async () => {
    const res = await create({ name: 'minimal' });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ roles: [], isEnabled: true, expiresAt: null, description: null });
  });

  it('gives the alias /api/apikeys a Location under /api/apikeys', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'via-alias' } });
    expect(res.statusCode).toBe(201);
    expect(res.headers.location).toBe(`/api/apikeys/${res.json().id}`);
  });

  it.each([
    ['/api/v1/%61pikeys', '/api/v1/apikeys'],
    ['/api/v1/apikeys/', '/api/v1/apikeys'],
    ['/api/v1/apikeys?x=/y', '/api/v1/apikeys'],
    ['/api/%61pikeys/', '/api/apikeys'],
  ])('builds Location from the route, not the raw URL: POST %s', async (url, collection) => {
    const res = await app.inject({ method: 'POST', url, headers: { ...admin.headers, ...json }, payload: { name: 'raw-url' } });
    expect(res.statusCode).toBe(201);
    expect(res.headers.location).toBe(`${collection}/${res.json().id}`);
  });
});

describe('GET /api/v1/apikeys/{id}', () => {
  it('returns the key without secret or hash, with an ETag', async () => {
    const created = (await create({ name: 'get-me', roleIds: [READER] })).json();
    const res = await app.inject({ method: 'GET', url: `/api/v1/apikeys/${created.id}`, headers: admin.headers });
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe('"1"');
    const { key: _secret, ...view } = created;
    expect(res.json()).toEqual(view);
    expect(res.body).not.toContain(created.key);
    expect(res.body).not.toContain('argon2');
  });

  it('is 404 API_KEY_NOT_FOUND for an unknown id', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/apikeys/00000000-0000-4000-8000-000000000000', headers: admin.headers });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('API_KEY_NOT_FOUND');
  });
});

describe('PUT /api/v1/apikeys/{id}', () => {
  it('replaces the whole key: absent description and expiresAt become null', async () => {
    const created = (await create({ name: 'put-me', description: 'old', roleIds: [READER], expiresAt: '2099-01-01T00:00:00Z' })).json();
    const res = await app.inject({
      method: 'PUT',
      url: `/api/v1/apikeys/${created.id}`,
      headers: { ...admin.headers, ...json },
      payload: { name: 'put-me-2', roleIds: [OPERATOR], isEnabled: false, changeReason: 'rotate' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe('"2"');
    expect(res.json()).toMatchObject({
      id: created.id,
      name: 'put-me-2',
      description: null,
      expiresAt: null,
      roles: [{ id: OPERATOR, name: 'Operator' }],
      isEnabled: false,
      createdAt: created.createdAt,
    });
    expect(res.json().updatedAt > created.updatedAt).toBe(true);
    const changes = await sql(dbUrl, 'SELECT version, operation, change_reason FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [created.id]);
    expect(changes).toEqual([
      { version: 1, operation: 'create', change_reason: null },
      { version: 2, operation: 'update', change_reason: 'rotate' },
    ]);
  });

  it('accepts a past expiresAt, which expires the key at once', async () => {
    const created = (await create({ name: 'expire-now', roleIds: [READER] })).json();
    const res = await app.inject({
      method: 'PUT',
      url: `/api/v1/apikeys/${created.id}`,
      headers: { ...admin.headers, ...json },
      payload: { name: 'expire-now', roleIds: [READER], isEnabled: true, expiresAt: '2000-01-01T00:00:00Z' },
    });
    expect(res.statusCode).toBe(200);
    const after = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': created.key } });
    expect(after.statusCode).toBe(401);
    expect(after.json().code).toBe('API_KEY_EXPIRED');
  });
});

describe('PATCH /api/v1/apikeys/{id}', () => {
  it('changes only the given fields; expiresAt null removes the expiry; roleIds replaces', async () => {
    const created = (await create({ name: 'patch-me', description: 'keep me', roleIds: [READER], expiresAt: '2099-01-01T00:00:00Z' })).json();
    const url = `/api/v1/apikeys/${created.id}`;
    const a = await app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json }, payload: { expiresAt: null } });
    expect(a.statusCode).toBe(200);
    expect(a.json()).toMatchObject({ name: 'patch-me', description: 'keep me', expiresAt: null, roles: [{ id: READER, name: 'Reader' }], isEnabled: true });
    const b = await app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json }, payload: { roleIds: [], isEnabled: false, name: 'patched' } });
    expect(b.json()).toMatchObject({ name: 'patched', description: 'keep me', roles: [], isEnabled: false });
    expect(b.headers.etag).toBe('"3"');
    const c = await app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json }, payload: { isEnabled: true, description: null } });
    expect(c.json()).toMatchObject({ isEnabled: true, description: null, name: 'patched' });
  });
});

describe('If-Match', () => {
  it('applies with the current ETag, refuses a stale one with 412 and changes nothing', async () => {
    const created = (await create({ name: 'etag-me' })).json();
    const url = `/api/v1/apikeys/${created.id}`;
    const ok = await app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json, 'if-match': '"1"' }, payload: { name: 'etag-2' } });
    expect(ok.statusCode).toBe(200);
    const stale = await app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json, 'if-match': '"1"' }, payload: { name: 'etag-3' } });
    expect(stale.statusCode).toBe(412);
    expect(stale.json().code).toBe('PRECONDITION_FAILED');
    const put = await app.inject({
      method: 'PUT',
      url,
      headers: { ...admin.headers, ...json, 'if-match': '"1"' },
      payload: { name: 'etag-4', roleIds: [], isEnabled: true },
    });
    expect(put.statusCode).toBe(412);
    const now = await app.inject({ method: 'GET', url, headers: admin.headers });
    expect(now.json().name).toBe('etag-2');
    expect(now.headers.etag).toBe('"2"');
    const star = await app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json, 'if-match': '*' }, payload: { name: 'etag-5' } });
    expect(star.statusCode).toBe(200);
  });
});

describe('If-Match details', () => {
  it('uses strong comparison: a weak tag never matches', async () => {
    const created = (await create({ name: 'weak-etag' })).json();
    const res = await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${created.id}`, headers: { ...admin.headers, ...json, 'if-match': 'W/"1"' }, payload: { name: 'x' } });
    expect(res.statusCode).toBe(412);
  });

  it('DELETE honours If-Match too', async () => {
    const created = (await create({ name: 'delete-etag' })).json();
    const url = `/api/v1/apikeys/${created.id}`;
    const stale = await app.inject({ method: 'DELETE', url, headers: { ...admin.headers, 'if-match': '"7"' } });
    expect(stale.statusCode).toBe(412);
    expect(await sql(dbUrl, 'SELECT id FROM api_keys WHERE id = $1', [created.id])).toHaveLength(1);
    expect((await app.inject({ method: 'DELETE', url, headers: { ...admin.headers, 'if-match': '"1"' } })).statusCode).toBe(204);
  });
});

describe('ids', () => {
  it('any 8-4-4-4-12 hex GUID is a valid id (404 when absent), as in JIM\'s own examples', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/apikeys/12345678-1234-1234-1234-123456789abc', headers: admin.headers });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('API_KEY_NOT_FOUND');
  });
});

describe('concurrency', () => {
  it('40 concurrent PATCHes of one key: all succeed, one wins, history has one version per success', async () => {
    const created = (await create({ name: 'contended' })).json();
    const names = Array.from({ length: 40 }, (_, i) => `contended-${i}`);
    const results = await Promise.all(
      names.map((name) => app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${created.id}`, headers: { ...admin.headers, ...json }, payload: { name } })),
    );
    expect(results.map((r) => r.statusCode)).toEqual(names.map(() => 200));
    const final = (await app.inject({ method: 'GET', url: `/api/v1/apikeys/${created.id}`, headers: admin.headers })).json();
    expect(names).toContain(final.name);
    const versions = await sql<{ version: number }>(dbUrl, 'SELECT version FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [created.id]);
    expect(versions.map((v) => v.version)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
    const etags = results.map((r) => r.headers.etag).sort();
    expect(new Set(etags).size).toBe(40);
  });

  it('a delete racing updates never resurrects the key, and nothing fails with a 500', async () => {
    const created = (await create({ name: 'race-delete' })).json();
    const url = `/api/v1/apikeys/${created.id}`;
    const results = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json }, payload: { name: `r-${i}` } })),
      app.inject({ method: 'DELETE', url, headers: admin.headers }),
      ...Array.from({ length: 10 }, (_, i) => app.inject({ method: 'PATCH', url, headers: { ...admin.headers, ...json }, payload: { name: `s-${i}` } })),
    ]);
    for (const r of results) expect([200, 204, 404]).toContain(r.statusCode);
    expect(results.filter((r) => r.statusCode === 204)).toHaveLength(1);
    expect(await sql(dbUrl, 'SELECT id FROM api_keys WHERE id = $1', [created.id])).toEqual([]);
  });
});

describe('DELETE /api/v1/apikeys/{id}', () => {
  it('204 by default, records the reason, and the key stops working', async () => {
    const created = (await create({ name: 'delete-me', roleIds: [READER] })).json();
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${created.id}?changeReason=${encodeURIComponent('no longer needed')}`, headers: admin.headers });
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe('');
    expect(await sql(dbUrl, 'SELECT id FROM api_keys WHERE id = $1', [created.id])).toEqual([]);
    const [change] = await sql(dbUrl, "SELECT version, change_reason, snapshot->>'name' AS name FROM api_key_changes WHERE api_key_id = $1 AND operation = 'delete'", [created.id]);
    expect(change).toEqual({ version: 2, change_reason: 'no longer needed', name: 'delete-me' });
    const again = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': created.key } });
    expect(again.statusCode).toBe(401);
    expect(again.json().code).toBe('API_KEY_INVALID');
    const missing = await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${created.id}`, headers: admin.headers });
    expect(missing.statusCode).toBe(404);
  });

  it('with Prefer: return=representation, 200 and the deleted key', async () => {
    const created = (await create({ name: 'delete-show', roleIds: [READER] })).json();
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${created.id}`, headers: { ...admin.headers, prefer: 'return=representation' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['preference-applied']).toBe('return=representation');
    const { key: _secret, ...view } = created;
    expect(res.json()).toEqual(view);
  });
});
