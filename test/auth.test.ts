// Who may do what: every key state and role against every route, the escalation guard, and
// changes that take effect on the very next request.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { SYSTEM_ACTOR } from '../src/services/api-keys.js';
import { buildTestApp, routesOf, testDatabase } from './helpers/app.js';
import { missingRoutes } from './helpers/routes.js';
import { ADMIN, apiVisibleState, json, OPERATOR, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let dbUrl: string;
let admin: SeededKey;

beforeAll(async () => {
  // Webhooks on, towards a port where nothing listens (a test ping fails at once).
  app = await buildTestApp({ env: { WEBHOOK_SECRET_KEY: 'ef'.repeat(32), WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32' } });
  dbUrl = (await testDatabase()).url;
  admin = await seedKey(app, { name: 'auth-admin', roleIds: [ADMIN] });
});

/** `stream`: a success never ends (the event stream); its refusals are checked here, its successes over a socket elsewhere. */
/** A fresh subscription's path (+ suffix) per request. */
const webhookPath = async (suffix: string) =>
  `/api/v1/webhooks/${(await app.services.webhooks.create({ url: 'http://127.0.0.1:9/hook', eventTypes: ['apikey.expired'] })).webhook.id}${suffix}`;

type Route = { name: string; permission: string | null; stream?: true; request: () => Promise<{ method: string; url: string; payload?: object }> };

let roleCount = 0;
/** A role of one's own to aim a write at. */
const ownRole = async () => (await app.services.roles.create(SYSTEM_ACTOR, { name: `auth-role-${++roleCount}`, permissions: ['a.b'] })).role.id;

/** Each route with a request that would succeed for a caller allowed to make it. */
const ROUTES: Route[] = [
  { name: 'GET /userinfo', permission: null, request: async () => ({ method: 'GET', url: '/api/v1/userinfo' }) },
  { name: 'GET /roles', permission: 'roles.read', request: async () => ({ method: 'GET', url: '/api/v1/roles' }) },
  { name: 'GET /apikeys', permission: 'apikeys.read', request: async () => ({ method: 'GET', url: '/api/v1/apikeys' }) },
  {
    name: 'GET /apikeys/{id}',
    permission: 'apikeys.read',
    request: async () => ({ method: 'GET', url: `/api/v1/apikeys/${admin.id}` }),
  },
  {
    name: 'POST /apikeys',
    permission: 'apikeys.write',
    request: async () => ({ method: 'POST', url: '/api/v1/apikeys', payload: { name: 'matrix-new', roleIds: [] } }),
  },
  {
    name: 'PUT /apikeys/{id}',
    permission: 'apikeys.write',
    request: async () => {
      const t = await seedKey(app, { name: 'matrix-put' });
      return { method: 'PUT', url: `/api/v1/apikeys/${t.id}`, payload: { name: 'matrix-put-2', roleIds: [], isEnabled: true } };
    },
  },
  {
    name: 'POST /apikeys/{id}/rotate',
    permission: 'apikeys.write',
    request: async () => {
      const t = await seedKey(app, { name: 'matrix-rotate' });
      return { method: 'POST', url: `/api/v1/apikeys/${t.id}/rotate`, payload: {} };
    },
  },
  {
    name: 'PATCH /apikeys/{id}',
    permission: 'apikeys.write',
    request: async () => {
      const t = await seedKey(app, { name: 'matrix-patch' });
      return { method: 'PATCH', url: `/api/v1/apikeys/${t.id}`, payload: { isEnabled: false } };
    },
  },
  {
    name: 'DELETE /apikeys/{id}',
    permission: 'apikeys.write',
    request: async () => {
      const t = await seedKey(app, { name: 'matrix-delete' });
      return { method: 'DELETE', url: `/api/v1/apikeys/${t.id}` };
    },
  },
  { name: 'GET /apikeys/{id}/change-history', permission: 'audit.read', request: async () => ({ method: 'GET', url: `/api/v1/apikeys/${admin.id}/change-history` }) },
  {
    name: 'GET /apikeys/{id}/change-history/compare',
    permission: 'audit.read',
    request: async () => ({ method: 'GET', url: `/api/v1/apikeys/${admin.id}/change-history/compare?fromVersion=1&toVersion=1` }),
  },
  { name: 'GET /apikeys/{id}/change-history/{version}', permission: 'audit.read', request: async () => ({ method: 'GET', url: `/api/v1/apikeys/${admin.id}/change-history/1` }) },
  { name: 'GET /security-events', permission: 'audit.read', request: async () => ({ method: 'GET', url: '/api/v1/security-events' }) },
  { name: 'GET /apikeys/{id}/usage', permission: 'audit.read', request: async () => ({ method: 'GET', url: `/api/v1/apikeys/${admin.id}/usage` }) },
  { name: 'GET /usage/top', permission: 'audit.read', request: async () => ({ method: 'GET', url: '/api/v1/usage/top' }) },
  { name: 'GET /roles/{id}', permission: 'roles.read', request: async () => ({ method: 'GET', url: '/api/v1/roles/1' }) },
  { name: 'POST /roles', permission: 'roles.write', request: async () => ({ method: 'POST', url: '/api/v1/roles', payload: { name: `auth-new-${++roleCount}`, permissions: ['a.b'] } }) },
  { name: 'PUT /roles/{id}', permission: 'roles.write', request: async () => ({ method: 'PUT', url: `/api/v1/roles/${await ownRole()}`, payload: { name: `auth-put-${++roleCount}`, permissions: [] } }) },
  { name: 'PATCH /roles/{id}', permission: 'roles.write', request: async () => ({ method: 'PATCH', url: `/api/v1/roles/${await ownRole()}`, payload: { description: 'd' } }) },
  { name: 'DELETE /roles/{id}', permission: 'roles.write', request: async () => ({ method: 'DELETE', url: `/api/v1/roles/${await ownRole()}` }) },
  { name: 'GET /roles/{id}/change-history', permission: 'audit.read', request: async () => ({ method: 'GET', url: `/api/v1/roles/${await ownRole()}/change-history` }) },
  { name: 'POST /apikeys/verify', permission: 'apikeys.verify', request: async () => ({ method: 'POST', url: '/api/v1/apikeys/verify', payload: { key: 'not-a-key' } }) },
  { name: 'GET /apikeys/verify/events', permission: 'apikeys.verify', stream: true, request: async () => ({ method: 'GET', url: '/api/v1/apikeys/verify/events' }) },
  { name: 'GET /webhooks', permission: 'webhooks.read', request: async () => ({ method: 'GET', url: '/api/v1/webhooks' }) },
  { name: 'POST /webhooks', permission: 'webhooks.write', request: async () => ({ method: 'POST', url: '/api/v1/webhooks', payload: { url: 'http://127.0.0.1:9/hook', eventTypes: ['apikey.expired'] } }) },
  { name: 'GET /webhooks/{id}', permission: 'webhooks.read', request: async () => ({ method: 'GET', url: await webhookPath('') }) },
  { name: 'PUT /webhooks/{id}', permission: 'webhooks.write', request: async () => ({ method: 'PUT', url: await webhookPath(''), payload: { url: 'http://127.0.0.1:9/hook', eventTypes: ['apikey.expired'] } }) },
  { name: 'PATCH /webhooks/{id}', permission: 'webhooks.write', request: async () => ({ method: 'PATCH', url: await webhookPath(''), payload: { description: 'd' } }) },
  { name: 'DELETE /webhooks/{id}', permission: 'webhooks.write', request: async () => ({ method: 'DELETE', url: await webhookPath('') }) },
  { name: 'POST /webhooks/{id}/enable', permission: 'webhooks.write', request: async () => ({ method: 'POST', url: await webhookPath('/enable') }) },
  { name: 'POST /webhooks/{id}/disable', permission: 'webhooks.write', request: async () => ({ method: 'POST', url: await webhookPath('/disable') }) },
  { name: 'POST /webhooks/{id}/rotate-secret', permission: 'webhooks.write', request: async () => ({ method: 'POST', url: await webhookPath('/rotate-secret'), payload: {} }) },
  { name: 'POST /webhooks/{id}/test', permission: 'webhooks.write', request: async () => ({ method: 'POST', url: await webhookPath('/test') }) },
  { name: 'GET /webhooks/{id}/deliveries', permission: 'webhooks.read', request: async () => ({ method: 'GET', url: await webhookPath('/deliveries') }) },
];

async function call(route: Route, headers: Record<string, string>) {
  const r = await route.request();
  return app.inject({ method: r.method as 'GET', url: r.url, headers: { ...headers, ...(r.payload ? json : {}) }, payload: r.payload });
}

function expect401(res: Awaited<ReturnType<typeof call>>, code: string) {
  expect(res.statusCode).toBe(401);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['www-authenticate']).toMatch(/ApiKey realm="keyward", header="X-API-Key", Bearer realm="keyward"/);
  expect(res.json().code).toBe(code);
}

describe('credentials that are refused on every protected route', () => {
  it('the table covers every authenticated route the app registers (a new one fails here until it is added)', () => {
    const listed: Array<[string, string]> = ROUTES.map((r) => {
      const [method, path] = r.name.split(' ');
      return [method, `/api/v1${path}`];
    });
    expect(missingRoutes(routesOf(app), listed, (r) => r.authorizes === undefined), 'protected routes missing from ROUTES').toEqual([]);
  });

  const wellFormedUnknown = `jim_ak_${'0'.repeat(64)}`;
  let disabled: SeededKey;
  let expired: SeededKey;
  let deleted: SeededKey;
  let wrongSecret: string;

  beforeAll(async () => {
    disabled = await seedKey(app, { name: 'disabled', roleIds: [ADMIN], isEnabled: false });
    expired = await seedKey(app, { name: 'expired', roleIds: [ADMIN] });
    await sql(dbUrl, "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [expired.id]);
    deleted = await seedKey(app, { name: 'deleted', roleIds: [ADMIN] });
    await app.services.keys.remove({ type: 'system', id: null, name: 'system', permissions: new Set(['*']) }, deleted.id, undefined);
    // The real prefix of the admin key, with a different secret.
    wrongSecret = admin.secret.slice(0, 16) + 'f'.repeat(admin.secret.length - 16);
  });

  const cases: Array<[string, () => Record<string, string>, string]> = [
    ['no key', () => ({}), 'UNAUTHENTICATED'],
    ['an empty X-API-Key', () => ({ 'x-api-key': '' }), 'UNAUTHENTICATED'],
    ['a Basic Authorization header', () => ({ authorization: 'Basic dXNlcjpwYXNz' }), 'UNAUTHENTICATED'],
    ['garbage', () => ({ 'x-api-key': 'hello' }), 'API_KEY_INVALID'],
    ['a key without the jim_ak_ prefix', () => ({ 'x-api-key': 'x'.repeat(71) }), 'API_KEY_INVALID'],
    ['a key with a space inside', () => ({ 'x-api-key': `jim_ak_${'a'.repeat(30)} ${'b'.repeat(10)}` }), 'API_KEY_INVALID'],
    ['an over-long key', () => ({ 'x-api-key': `jim_ak_${'a'.repeat(300)}` }), 'API_KEY_INVALID'],
    ['a well-formed unknown key', () => ({ 'x-api-key': wellFormedUnknown }), 'API_KEY_INVALID'],
    ['the wrong secret for a real prefix', () => ({ 'x-api-key': wrongSecret }), 'API_KEY_INVALID'],
    ['a deleted key', () => ({ 'x-api-key': deleted.secret }), 'API_KEY_INVALID'],
    ['a disabled key', () => ({ 'x-api-key': disabled.secret }), 'API_KEY_DISABLED'],
    ['an expired key', () => ({ 'x-api-key': expired.secret }), 'API_KEY_EXPIRED'],
    ['X-API-Key and Bearer disagreeing', () => ({ 'x-api-key': admin.secret, authorization: `Bearer ${wellFormedUnknown}` }), 'API_KEY_INVALID'],
  ];

  for (const [label, headers, code] of cases) {
    it(`${label} → 401 ${code} on every route, changing nothing`, async () => {
      const before = await apiVisibleState(dbUrl);
      for (const route of ROUTES) {
        const res = await call(route, headers());
        expect(res.statusCode, route.name).toBe(401);
        expect401(res, code);
      }
      // Only the seeding of targets happened; no request changed a key.
      const after = await apiVisibleState(dbUrl);
      const seededNames = new Set(['matrix-put', 'matrix-patch', 'matrix-rotate', 'matrix-delete']);
      const changed = after.filter((row) => !before.some((b) => JSON.stringify(b) === JSON.stringify(row)));
      expect(changed.every((r) => seededNames.has(r.name as string))).toBe(true);
    });
  }

  it('a wrong secret is API_KEY_INVALID even for a disabled or expired key (the secret is checked first)', async () => {
    for (const k of [disabled, expired]) {
      const wrong = k.secret.slice(0, 16) + '0'.repeat(k.secret.length - 16);
      const res = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': wrong } });
      expect(res.json().code).toBe('API_KEY_INVALID');
    }
  });

  it('unknown, wrong-secret and deleted keys are indistinguishable to the caller', async () => {
    const bodies = await Promise.all(
      [wellFormedUnknown, wrongSecret, deleted.secret, 'garbage'].map(async (k) => {
        const res = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': k } });
        const { requestId: _r, timestamp: _t, ...rest } = res.json();
        return { status: res.statusCode, headers: res.headers['www-authenticate'], rest };
      }),
    );
    for (const b of bodies) expect(b).toEqual(bodies[0]);
  });

  it('health and the OpenAPI document need no key, and ignore a bad one', async () => {
    for (const url of ['/api/v1/health', '/openapi.json']) {
      expect((await app.inject({ method: 'GET', url })).statusCode).toBe(200);
      expect((await app.inject({ method: 'GET', url, headers: { 'x-api-key': 'garbage' } })).statusCode).toBe(200);
    }
  });

  it('authentication comes before input validation', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: json, payload: { bogus: true } });
    expect401(res, 'UNAUTHENTICATED');
  });
});

describe('roles against every route', () => {
  const roleCases: Array<[string, number[], string[]]> = [
    ['no roles', [], []],
    ['Reader', [READER], ['apikeys.read', 'audit.read', 'roles.read']],
    ['Operator', [OPERATOR], ['apikeys.read', 'apikeys.verify', 'apikeys.write', 'audit.read', 'roles.read']],
    ['Administrator', [ADMIN], ['apikeys.read', 'apikeys.verify', 'apikeys.write', 'audit.read', 'roles.read', 'roles.write', 'webhooks.read', 'webhooks.write']],
    ['Verifier', [5], ['apikeys.verify']],
  ];
  for (const [label, roleIds, permissions] of roleCases) {
    it(`${label}: allowed exactly where it holds the permission`, async () => {
      const caller = await seedKey(app, { name: `role-${label}`, roleIds });
      for (const route of ROUTES) {
        const allowed = route.permission === null || permissions.includes(route.permission);
        if (allowed && route.stream) continue; // it would stream forever: test/verify.test.ts reads it over a socket
        const res = await call(route, caller.headers);
        if (allowed) {
          expect([200, 201, 204], `${label} ${route.name}: ${res.body}`).toContain(res.statusCode);
        } else {
          expect(res.statusCode, `${label} ${route.name}`).toBe(403);
          expect(res.headers['content-type']).toBe('application/problem+json');
          expect(res.json().code).toBe('FORBIDDEN');
          expect(res.json().detail).toContain(route.permission!);
        }
      }
    });
  }

  it('a key works as a Bearer token too, and both headers with the same key are fine', async () => {
    const reader = await seedKey(app, { roleIds: [READER] });
    const bearer = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { authorization: `Bearer ${reader.secret}` } });
    expect(bearer.json().id).toBe(reader.id);
    const both = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { authorization: `bearer ${reader.secret}`, 'x-api-key': reader.secret } });
    expect(both.json().id).toBe(reader.id);
  });
});

describe('the escalation guard', () => {
  let operator: SeededKey;
  beforeAll(async () => {
    operator = await seedKey(app, { name: 'escalation-operator', roleIds: [OPERATOR] });
  });

  async function expectForbiddenAndUnchanged(request: { method: 'POST' | 'PUT' | 'PATCH' | 'DELETE'; url: string; payload?: object }) {
    const before = await apiVisibleState(dbUrl);
    const res = await app.inject({ ...request, headers: { ...operator.headers, ...(request.payload ? json : {}) } });
    expect(res.statusCode, res.body).toBe(403);
    expect(res.json().code).toBe('FORBIDDEN');
    expect(await apiVisibleState(dbUrl)).toEqual(before);
  }

  it('an Operator cannot mint an Administrator key, and is told which permission it lacks', async () => {
    await expectForbiddenAndUnchanged({ method: 'POST', url: '/api/v1/apikeys', payload: { name: 'sneaky', roleIds: [ADMIN] } });
    const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...operator.headers, ...json }, payload: { name: 'sneaky', roleIds: [ADMIN] } });
    expect(res.json().detail).toMatch(/permissions your key does not have: \* \(every permission\)/);
  });

  it('an Operator cannot disable, rename or delete an Administrator key', async () => {
    const target = await seedKey(app, { name: 'protected-admin', roleIds: [ADMIN] });
    await expectForbiddenAndUnchanged({ method: 'PATCH', url: `/api/v1/apikeys/${target.id}`, payload: { isEnabled: false } });
    await expectForbiddenAndUnchanged({ method: 'PUT', url: `/api/v1/apikeys/${target.id}`, payload: { name: 'x', roleIds: [ADMIN], isEnabled: true } });
    await expectForbiddenAndUnchanged({ method: 'DELETE', url: `/api/v1/apikeys/${target.id}` });
  });

  it('an Operator cannot demote an Administrator key, nor promote a Reader key to Administrator', async () => {
    const adminKey = await seedKey(app, { name: 'demote-me', roleIds: [ADMIN] });
    await expectForbiddenAndUnchanged({ method: 'PATCH', url: `/api/v1/apikeys/${adminKey.id}`, payload: { roleIds: [READER] } });
    const readerKey = await seedKey(app, { name: 'promote-me', roleIds: [READER] });
    await expectForbiddenAndUnchanged({ method: 'PATCH', url: `/api/v1/apikeys/${readerKey.id}`, payload: { roleIds: [ADMIN] } });
    await expectForbiddenAndUnchanged({ method: 'PUT', url: `/api/v1/apikeys/${readerKey.id}`, payload: { name: 'promote-me', roleIds: [ADMIN, READER], isEnabled: true } });
  });

  it('an Operator may create, change, disable and delete Reader and Operator keys', async () => {
    const created = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...operator.headers, ...json }, payload: { name: 'by-operator', roleIds: [READER] } });
    expect(created.statusCode).toBe(201);
    const id = created.json().id;
    const patched = await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${id}`, headers: { ...operator.headers, ...json }, payload: { roleIds: [OPERATOR], isEnabled: false } });
    expect(patched.statusCode).toBe(200);
    const removed = await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${id}`, headers: operator.headers });
    expect(removed.statusCode).toBe(204);
  });

  it('an Administrator may do all of it', async () => {
    const target = await seedKey(app, { name: 'admin-target', roleIds: [ADMIN] });
    const res = await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${target.id}`, headers: { ...admin.headers, ...json }, payload: { roleIds: [READER] } });
    expect(res.statusCode).toBe(200);
  });
});

describe('changes apply on the very next request', () => {
  it('disable, re-enable, expire, demote, delete', async () => {
    const key = await seedKey(app, { name: 'next-request', roleIds: [READER] });
    const me = () => app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: key.headers });
    const patch = (payload: object) =>
      app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload });

    expect((await me()).statusCode).toBe(200);
    await patch({ isEnabled: false });
    expect((await me()).json().code).toBe('API_KEY_DISABLED');
    await patch({ isEnabled: true });
    expect((await me()).statusCode).toBe(200);
    await patch({ roleIds: [] });
    expect((await me()).statusCode).toBe(403);
    await patch({ roleIds: [READER], expiresAt: '2001-01-01T00:00:00Z' });
    expect((await me()).json().code).toBe('API_KEY_EXPIRED');
    await patch({ expiresAt: null });
    expect((await me()).statusCode).toBe(200);
    await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${key.id}`, headers: admin.headers });
    expect((await me()).json().code).toBe('API_KEY_INVALID');
  });
});
