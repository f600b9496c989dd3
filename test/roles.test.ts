// Roles managed through the API: CRUD, strict permission names, wildcards in the escalation
// guard, built-in roles fixed, ROLE_IN_USE, change history, and cached keys following a role
// change on every instance.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { covers, grants } from '../src/auth/permissions.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { until } from './helpers/until.js';
import { ADMIN, json, OPERATOR, seedKey, sql, type SeededKey } from './helpers/keys.js';

const VERIFIER = 5;


let app: App;
let url: string;
let admin: SeededKey;
beforeAll(async () => {
  url = (await testDatabase()).url;
  app = await buildTestApp();
  admin = await seedKey(app, { name: 'roles-admin', roleIds: [ADMIN] });
});

const call = (key: SeededKey, method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, payload?: object, headers: Record<string, string> = {}) =>
  app.inject({ method, url: `/api/v1${path}`, headers: { ...key.headers, ...(payload ? json : {}), ...headers }, payload: payload as never });
const roleRows = () => sql(url, 'SELECT id, name, description, permissions, version FROM roles ORDER BY id');

describe('permission names and wildcards', () => {
  it('a trailing .* grants every name below it; only * grants *', () => {
    const held = new Set(['orders.*']);
    expect(grants(held, 'orders.read')).toBe(true);
    expect(grants(held, 'orders.items.write')).toBe(true);
    expect(grants(held, 'orders.*')).toBe(true);
    expect(grants(held, 'orders.items.*')).toBe(true);
    expect(grants(held, 'billing.read')).toBe(false);
    expect(grants(held, 'ordersx.read')).toBe(false);
    expect(grants(held, '*')).toBe(false);
    expect(grants(new Set(['orders.items.*']), 'orders.read')).toBe(false);
    expect(covers(new Set(['*']), ['*', 'anything.at.all'])).toBe(true);
  });
});

describe('built-in roles', () => {
  it('lists Verifier (apikeys.verify) and gives Operator apikeys.verify; Administrator covers the new permissions', async () => {
    const res = await call(admin, 'GET', '/roles');
    expect(res.statusCode).toBe(200);
    const roles = res.json() as Array<{ id: number; name: string; builtIn: boolean; permissions: string[]; description: string | null }>;
    expect(roles.map((r) => [r.id, r.name, r.builtIn])).toEqual([
      [1, 'Administrator', true],
      [2, 'Operator', true],
      [3, 'Reader', true],
      [4, 'Monitoring', true],
      [5, 'Verifier', true],
    ]);
    expect(roles[4].permissions).toEqual(['apikeys.verify']);
    expect(roles[1].permissions).toContain('apikeys.verify');
    expect(roles[1].permissions).not.toContain('roles.write');
    expect(roles[0].permissions).toEqual(expect.arrayContaining(['*', 'apikeys.verify', 'roles.write']));
    expect(roles.every((r) => typeof r.description === 'string')).toBe(true);
  });

  it('cannot be changed or deleted: 409 ROLE_BUILT_IN, nothing changes', async () => {
    const before = await roleRows();
    for (const [method, payload] of [
      ['PUT', { name: 'Operator', permissions: ['*'] }],
      ['PATCH', { permissions: ['*'] }],
      ['DELETE', undefined],
    ] as const) {
      for (const id of [ADMIN, OPERATOR, VERIFIER]) {
        const res = await call(admin, method, `/roles/${id}`, payload);
        expect(res.statusCode, `${method} ${id}`).toBe(409);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json().code).toBe('ROLE_BUILT_IN');
        expect(res.json().detail).toMatch(/built-in role/);
      }
    }
    expect(await roleRows()).toEqual(before);
  });
});

describe('create, read, update, delete', () => {
  it('creates a role (201, Location, ETag, id from 100), records it, reads it back', async () => {
    const res = await call(admin, 'POST', '/roles', { name: 'orders-reader', description: 'Reads orders', permissions: ['orders.read'], changeReason: 'CHG-1' });
    expect(res.statusCode).toBe(201);
    const role = res.json();
    expect(role).toMatchObject({ name: 'orders-reader', description: 'Reads orders', builtIn: false, permissions: ['orders.read'] });
    expect(role.id).toBeGreaterThanOrEqual(100);
    expect(res.headers.location).toBe(`/api/v1/roles/${role.id}`);
    expect(res.headers.etag).toBe('"1"');
    const got = await call(admin, 'GET', `/roles/${role.id}`);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(role);
    const [history] = await sql(url, 'SELECT version, operation, actor_id, actor_name, change_reason, snapshot FROM role_changes WHERE role_id = $1', [role.id]);
    expect(history).toEqual({
      version: 1,
      operation: 'create',
      actor_id: admin.id,
      actor_name: 'roles-admin',
      change_reason: 'CHG-1',
      snapshot: { name: 'orders-reader', description: 'Reads orders', permissions: ['orders.read'] },
    });
  });

  it('refuses malformed permission names, naming the bad one; nothing is written', async () => {
    const before = await roleRows();
    const cases: Array<[unknown, RegExp]> = [
      [['orders.read', 'Orders.Read'], /permissions\[1\] \("Orders\.Read"\) must be lower-case words/],
      [['orders'], /permissions\[0\] \("orders"\) must be lower-case words.*at least two/],
      [['orders.*.read'], /permissions\[0\] \("orders\.\*\.read"\)/],
      [['orders.read', 'orders.read'], /permissions\[1\] \("orders\.read"\) repeats a permission/],
      [['orders..read'], /permissions\[0\]/],
      [['.orders'], /permissions\[0\]/],
      [['apikeys.export'], /permissions\[0\] \("apikeys\.export"\) .*only keyward's own/],
      [['roles.read.*'], /permissions\[0\]/],
      [[7], /permissions\[0\] must be a permission name/],
      ['orders.read', /permissions must be an array/],
    ];
    for (const [permissions, detail] of cases) {
      const res = await call(admin, 'POST', '/roles', { name: `bad-${Math.random()}`, permissions });
      expect(res.statusCode, JSON.stringify(permissions)).toBe(400);
      expect(res.json().code).toBe('VALIDATION_FAILED');
      expect(res.json().detail).toMatch(detail);
    }
    expect((await call(admin, 'POST', '/roles', { name: 'no-perms' })).json().detail).toMatch(/permissions is required/);
    expect(await roleRows()).toEqual(before);
  });

  it('names are unique whatever their case: 409 ROLE_NAME_TAKEN', async () => {
    expect((await call(admin, 'POST', '/roles', { name: 'Billing', permissions: ['billing.read'] })).statusCode).toBe(201);
    const res = await call(admin, 'POST', '/roles', { name: 'billing', permissions: ['billing.read'] });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('ROLE_NAME_TAKEN');
    expect(res.json().detail).toMatch(/"Billing" already exists/);
    const same = await call(admin, 'POST', '/roles', { name: 'VERIFIER', permissions: ['x.y'] });
    expect(same.json().code).toBe('ROLE_NAME_TAKEN');
  });

  it('PUT replaces, PATCH changes what it names; If-Match guards both; 404 for an unknown role', async () => {
    const id = (await call(admin, 'POST', '/roles', { name: 'ship', description: 'd', permissions: ['ship.read'] })).json().id;
    const put = await call(admin, 'PUT', `/roles/${id}`, { name: 'ship', permissions: ['ship.read', 'ship.write'] }, { 'if-match': '"1"' });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ description: null, permissions: ['ship.read', 'ship.write'] });
    expect(put.headers.etag).toBe('"2"');
    const stale = await call(admin, 'PATCH', `/roles/${id}`, { description: 'x' }, { 'if-match': '"1"' });
    expect(stale.statusCode).toBe(412);
    const patch = await call(admin, 'PATCH', `/roles/${id}`, { description: 'ships' });
    expect(patch.json()).toMatchObject({ name: 'ship', description: 'ships', permissions: ['ship.read', 'ship.write'] });
    expect((await call(admin, 'GET', '/roles/99999')).json().code).toBe('ROLE_NOT_FOUND');
    expect((await call(admin, 'PATCH', '/roles/99999', { description: 'x' })).statusCode).toBe(404);
    expect((await call(admin, 'GET', '/roles/abc')).statusCode).toBe(400);
  });

  it('a role a key holds cannot be deleted (409 ROLE_IN_USE); once free it can, and its history stays readable', async () => {
    const id = (await call(admin, 'POST', '/roles', { name: 'temp-role', permissions: ['temp.read'] })).json().id;
    const key = await seedKey(app, { name: 'holder', roleIds: [id] });
    const refused = await call(admin, 'DELETE', `/roles/${id}`);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'ROLE_IN_USE', detail: expect.stringMatching(/1 key holds this role/) });
    expect((await call(admin, 'PATCH', `/apikeys/${key.id}`, { roleIds: [] })).statusCode).toBe(200);
    const removed = await call(admin, 'DELETE', `/roles/${id}?changeReason=unused`);
    expect(removed.statusCode).toBe(204);
    expect((await call(admin, 'GET', `/roles/${id}`)).statusCode).toBe(404);
    const history = await call(admin, 'GET', `/roles/${id}/change-history`);
    expect(history.statusCode).toBe(200);
    expect(history.json().map((e: { version: number; operation: string }) => [e.version, e.operation])).toEqual([
      [2, 'delete'],
      [1, 'create'],
    ]);
    expect(history.json()[0]).toMatchObject({ changeReason: 'unused', actor: { type: 'apiKey', id: admin.id, name: 'roles-admin' }, snapshot: { name: 'temp-role', permissions: ['temp.read'] } });
    const paged = await call(admin, 'GET', `/roles/${id}/change-history?limit=1`);
    expect(paged.json()).toHaveLength(1);
    const next = /<([^>]+)>; rel="next"/.exec(paged.headers.link as string)![1];
    const rest = await app.inject({ method: 'GET', url: next, headers: admin.headers });
    expect(rest.json().map((e: { version: number }) => e.version)).toEqual([1]);
    expect((await call(admin, 'GET', '/roles/98765/change-history')).json().code).toBe('ROLE_NOT_FOUND');
    expect((await call(admin, 'GET', `/roles/${VERIFIER}/change-history`)).json()).toEqual([]);
  });
});

describe('who may change roles', () => {
  it('needs roles.write (Administrator); an Operator gets 403', async () => {
    const operator = await seedKey(app, { name: 'op', roleIds: [OPERATOR] });
    const res = await call(operator, 'POST', '/roles', { name: 'op-role', permissions: ['apikeys.read'] });
    expect(res.statusCode).toBe(403);
    expect(res.json().detail).toMatch(/roles\.write/);
    expect((await call(operator, 'GET', '/roles')).statusCode).toBe(200);
  });

  it('grants only what the caller holds, with wildcard semantics: orders.* may grant orders.read, not billing.read or *', async () => {
    const delegate = (await call(admin, 'POST', '/roles', { name: 'orders-admin', permissions: ['roles.write', 'roles.read', 'orders.*'] })).json().id;
    const caller = await seedKey(app, { name: 'orders-admin-key', roleIds: [delegate] });
    const ok = await call(caller, 'POST', '/roles', { name: 'orders-viewer', permissions: ['orders.read', 'orders.items.*'] });
    expect(ok.statusCode).toBe(201);
    for (const permissions of [['billing.read'], ['*'], ['orders.read', 'apikeys.write']]) {
      const res = await call(caller, 'POST', '/roles', { name: `x-${permissions[0]}`, permissions });
      expect(res.statusCode, permissions.join()).toBe(403);
      expect(res.json().code).toBe('FORBIDDEN');
      expect(res.json().detail).toMatch(permissions[0] === '*' ? /\* \(every permission\)/ : permissions.includes('apikeys.write') ? /apikeys\.write/ : /billing\.read/);
    }
    // Nor may it widen a role beyond what it holds, or touch one that grants more than it holds.
    expect((await call(caller, 'PATCH', `/roles/${ok.json().id}`, { permissions: ['orders.read', 'billing.read'] })).statusCode).toBe(403);
    const billing = (await call(admin, 'POST', '/roles', { name: 'billing-admin', permissions: ['billing.*'] })).json().id;
    expect((await call(caller, 'PATCH', `/roles/${billing}`, { description: 'mine now' })).statusCode).toBe(403);
    expect((await call(caller, 'DELETE', `/roles/${billing}`)).statusCode).toBe(403);
    expect((await call(caller, 'PATCH', `/roles/${ok.json().id}`, { permissions: ['orders.*'] })).statusCode).toBe(200);
  });

  it('a caller whose key expires cannot widen a role held by keys that outlive it', async () => {
    const delegate = (await call(admin, 'POST', '/roles', { name: 'expiring-delegate', permissions: ['roles.write', 'inv.*'] })).json().id;
    const soon = new Date(Date.now() + 3_600_000).toISOString();
    const caller = await seedKey(app, { name: 'expiring', roleIds: [delegate], expiresAt: soon });
    const target = (await call(admin, 'POST', '/roles', { name: 'inv-reader', permissions: ['inv.read'] })).json().id;
    await seedKey(app, { name: 'forever', roleIds: [target] });
    const res = await call(caller, 'PATCH', `/roles/${target}`, { permissions: ['inv.read', 'inv.write'] });
    expect(res.statusCode).toBe(403);
    expect(res.json().detail).toMatch(/expires at .*held by keys that expire later/);
    expect((await call(caller, 'PATCH', `/roles/${target}`, { permissions: [] })).statusCode).toBe(200); // narrowing is fine
  });
});

describe('concurrent role and key changes', () => {
  it('a role edit racing edits of the keys holding it never deadlocks (every request answers 200)', async () => {
    const id = (await call(admin, 'POST', '/roles', { name: 'contended', permissions: ['c.read'] })).json().id;
    const holders = await Promise.all(Array.from({ length: 8 }, (_, i) => seedKey(app, { name: `holder-${i}`, roleIds: [id] })));
    for (let round = 0; round < 8; round++) {
      const roleChange = round % 2 ? { name: `contended-${round}` } : { permissions: round % 4 ? ['c.read'] : ['c.read', 'c.write'] };
      const results = await Promise.all([
        call(admin, 'PATCH', `/roles/${id}`, roleChange),
        ...holders.map((h) => call(admin, 'PATCH', `/apikeys/${h.id}`, { description: `round ${round}` })),
        call(admin, 'POST', '/apikeys', { name: `new-holder-${round}`, roleIds: [id] }),
      ]);
      expect(results.map((r) => r.statusCode), `round ${round}: ${results.find((r) => r.statusCode >= 300)?.body}`).toEqual([200, ...holders.map(() => 200), 201]);
    }
  });

  it('a role edit needs the permissions of every key holding it, from all its roles', async () => {
    const delegate = (await call(admin, 'POST', '/roles', { name: 'narrow-delegate', permissions: ['roles.write', 'shop.*'] })).json().id;
    const caller = await seedKey(app, { name: 'narrow-caller', roleIds: [delegate] });
    const shared = (await call(admin, 'POST', '/roles', { name: 'shop-reader', permissions: ['shop.read'] })).json().id;
    const billing = (await call(admin, 'POST', '/roles', { name: 'billing-reader', permissions: ['billing.read'] })).json().id;
    await seedKey(app, { name: 'shop-only', roleIds: [shared] });
    expect((await call(caller, 'PATCH', `/roles/${shared}`, { permissions: ['shop.read', 'shop.write'] })).statusCode).toBe(200);
    await seedKey(app, { name: 'shop-and-billing', roleIds: [shared, billing] });
    const refused = await call(caller, 'PATCH', `/roles/${shared}`, { permissions: ['shop.read'] });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().detail).toMatch(/held by keys with more permissions than yours: that needs permissions your key does not have: billing\.read/);
    expect((await call(caller, 'PATCH', `/roles/${shared}`, { description: 'a description alone changes no key' })).statusCode).toBe(200);
  });
});

describe('a role change reaches cached keys', () => {
  it('on this instance at once and on another within a second, via the new API', async () => {
    const other = await buildTestApp();
    await until(async () => app.services.listener.listening && other.services.listener.listening, 5_000);
    const id = (await call(admin, 'POST', '/roles', { name: 'lister', permissions: ['apikeys.read'] })).json().id;
    const key = await seedKey(app, { name: 'lister-key', roleIds: [id] });
    const status = (a: App) => a.inject({ method: 'GET', url: '/api/v1/apikeys?limit=1', headers: key.headers }).then((r) => r.statusCode);
    expect(await status(app)).toBe(200);
    expect(await status(other)).toBe(200); // cached on both
    const versionBefore = (await sql(url, 'SELECT version FROM api_keys WHERE id = $1', [key.id]))[0].version as number;
    expect((await call(admin, 'PATCH', `/roles/${id}`, { permissions: ['orders.read'] })).statusCode).toBe(200);
    expect(await status(app)).toBe(403);
    const ms = await until(async () => (await status(other)) === 403, 1_000);
    expect(ms).toBeLessThan(1_000);
    // The key's version moved (ETags, caches everywhere) and userinfo shows the new permissions.
    expect((await sql(url, 'SELECT version FROM api_keys WHERE id = $1', [key.id]))[0].version).toBe(versionBefore + 1);
    const me = await other.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers });
    expect(me.json().permissions).toEqual(['orders.read']);
    // And back: widened again, both instances serve it on the next request.
    expect((await call(admin, 'PUT', `/roles/${id}`, { name: 'lister', permissions: ['apikeys.*'] })).statusCode).toBe(200);
    expect(await status(app)).toBe(200);
    await until(async () => (await status(other)) === 200, 1_000);
    expect((await other.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers })).json().permissions).toEqual([
      'apikeys.*',
      'apikeys.read',
      'apikeys.verify',
      'apikeys.write',
    ]);
    await other.close();
  });
});
