// One table: every route × every kind of caller, with the status (and refusal code) expected in
// each cell. A refused request changes nothing; an allowed one does what the route says.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { generateKey } from '../src/auth/key-format.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, apiVisibleState, json, OPERATOR, READER, seedKey, type SeededKey } from './helpers/keys.js';

// U = 401 UNAUTHENTICATED, I = 401 API_KEY_INVALID, D = 401 API_KEY_DISABLED,
// E = 401 API_KEY_EXPIRED, F = 403 FORBIDDEN; a number is the success status.
const TABLE = `
route                                  none garbage wrong disabled expired deleted noroles reader operator admin infra
GET /api/v1/health                     200  200     200   200      200     200     200     200    200      200   200
GET /api/v1/health/live                200  200     200   200      200     200     200     200    200      200   200
GET /api/v1/health/version             200  200     200   200      200     200     200     200    200      200   200
GET /                                  302  302     302   302      302     302     302     302    302      302   302
GET /api/v1/userinfo                   U    I       I     D        E       I       200     200    200      200   200
GET /api/v1/roles                      U    I       I     D        E       I       F       200    200      200   200
GET /api/v1/apikeys                    U    I       I     D        E       I       F       200    200      200   200
POST /api/v1/apikeys                   U    I       I     D        E       I       F       F      201      201   201
GET /api/v1/apikeys/{id}               U    I       I     D        E       I       F       200    200      200   200
PUT /api/v1/apikeys/{id}               U    I       I     D        E       I       F       F      200      200   200
PATCH /api/v1/apikeys/{id}             U    I       I     D        E       I       F       F      200      200   200
DELETE /api/v1/apikeys/{id}            U    I       I     D        E       I       F       F      204      204   204
GET /api/v1/apikeys/{id}/change-history               U I I D E I F 200 200 200 200
GET /api/v1/apikeys/{id}/change-history/1             U I I D E I F 200 200 200 200
GET /api/v1/apikeys/{id}/change-history/compare       U I I D E I F 200 200 200 200
GET /api/v1/security-events                           U I I D E I F 200 200 200 200
HEAD /api/v1/apikeys/{id}                             401 401 401 401 401 401 403 200 200 200 200
GET /metrics                                          U I I D E I F F F 200 200
HEAD /metrics                                         401 401 401 401 401 401 403 403 403 200 200
GET /api/apikeys/{id}                                 U I I D E I F 200 200 200 200
PUT /api/apikeys/{id}                                 U I I D E I F F 200 200 200
DELETE /api/apikeys/{id}                              U I I D E I F F 204 204 204
GET /api/apikeys/{id}/change-history                  U I I D E I F 200 200 200 200
`;

const CODES: Record<string, [number, string]> = {
  U: [401, 'UNAUTHENTICATED'],
  I: [401, 'API_KEY_INVALID'],
  D: [401, 'API_KEY_DISABLED'],
  E: [401, 'API_KEY_EXPIRED'],
  F: [403, 'FORBIDDEN'],
};

const [header, ...rows] = TABLE.trim().split('\n').map((l) => l.trim().split(/\s+/));
const CALLERS = header.slice(1);
const ROUTES = rows.map((r) => ({ method: r[0], path: r[1], cells: r.slice(2) }));

const INFRA = generateKey();
let app: App;
let dbUrl: string;
const callers: Record<string, Record<string, string>> = {};

beforeAll(async () => {
  app = await buildTestApp({ env: { JIM_INFRASTRUCTURE_API_KEY: INFRA, METRICS_ENABLED: 'true' } });
  dbUrl = (await testDatabase()).url;
  const admin = await seedKey(app, { roleIds: [ADMIN], name: 'm-admin' });
  const h = { ...admin.headers, ...json };
  const disabled = await seedKey(app, { roleIds: [ADMIN], name: 'm-disabled' });
  await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${disabled.id}`, headers: h, payload: { isEnabled: false } });
  const expired = await seedKey(app, { roleIds: [ADMIN], name: 'm-expired' });
  await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${expired.id}`, headers: h, payload: { expiresAt: '2020-01-01T00:00:00Z' } });
  const deleted = await seedKey(app, { roleIds: [ADMIN], name: 'm-deleted' });
  await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${deleted.id}`, headers: h });
  const seeded = async (roleIds: number[], name: string) => (await seedKey(app, { roleIds, name })).headers;
  Object.assign(callers, {
    none: {},
    garbage: { 'x-api-key': 'not-a-key' },
    wrong: { 'x-api-key': `${admin.secret.slice(0, 16)}${'0'.repeat(admin.secret.length - 16)}` },
    disabled: disabled.headers,
    expired: expired.headers,
    deleted: deleted.headers,
    noroles: await seeded([], 'm-noroles'),
    reader: await seeded([READER], 'm-reader'),
    operator: await seeded([OPERATOR], 'm-operator'),
    admin: admin.headers,
    infra: { 'x-api-key': INFRA },
  });
});

/** A fresh Reader key per cell, so a write in one cell cannot affect another. */
async function target(): Promise<SeededKey> {
  return seedKey(app, { roleIds: [READER], name: 'm-target' });
}

function payloadFor(method: string) {
  if (method === 'POST') return { name: 'm-created', roleIds: [READER] };
  if (method === 'PUT') return { name: 'm-replaced', roleIds: [READER], isEnabled: true };
  if (method === 'PATCH') return { description: 'patched' };
  return undefined;
}

describe('every route × every caller', () => {
  it('has the status and code of its cell, and refusals change nothing', async () => {
    expect(CALLERS).toHaveLength(11);
    const seen: string[] = [];
    for (const route of ROUTES) {
      expect(route.cells, route.path).toHaveLength(CALLERS.length);
      for (const [i, caller] of CALLERS.entries()) {
        const t = await target();
        let url = route.path.replace('{id}', t.id);
        if (url.endsWith('/compare')) url += '?fromVersion=1&toVersion=1';
        const payload = payloadFor(route.method);
        const before = await apiVisibleState(dbUrl);
        const res = await app.inject({ method: route.method as 'GET', url, headers: { ...callers[caller], ...(payload ? json : {}) }, payload });
        const cell = route.cells[i];
        const where = `${route.method} ${route.path} as ${caller}`;
        if (route.method === 'HEAD' && Number(cell) >= 400) {
          // A HEAD reply has no body to carry the code: the status and headers tell.
          expect(res.statusCode, where).toBe(Number(cell));
          expect(res.headers['content-type'], where).toBe('application/problem+json');
          expect(await apiVisibleState(dbUrl), where).toEqual(before);
        } else if (cell in CODES) {
          const [status, code] = CODES[cell];
          expect(res.statusCode, where).toBe(status);
          expect(res.headers['content-type'], where).toBe('application/problem+json');
          expect(res.json().code, where).toBe(code);
          expect(await apiVisibleState(dbUrl), where).toEqual(before);
        } else {
          expect(res.statusCode, `${where}: ${res.body.slice(0, 200)}`).toBe(Number(cell));
        }
        seen.push(`${route.method} ${route.path} ${caller} ${res.statusCode}`);
      }
    }
    expect(seen).toHaveLength(ROUTES.length * CALLERS.length);
  }, 120_000);
});
