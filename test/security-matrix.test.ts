// One table: every route × every kind of caller, with the status (and refusal code) expected in
// each cell. A refused request changes nothing; an allowed one does what the route says.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { generateKey } from '../src/auth/key-format.js';
import type { AddressInfo } from 'node:net';
import { SYSTEM_ACTOR } from '../src/services/api-keys.js';
import { buildTestApp, routesOf, testDatabase } from './helpers/app.js';
import { openSse } from './helpers/sse.js';
import { isConsole, isExplorer, missingRoutes } from './helpers/routes.js';
import { ADMIN, apiVisibleState, json, OPERATOR, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

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
POST /api/v1/apikeys/{id}/rotate       U    I       I     D        E       I       F       F      201      201   201
POST /api/v1/apikeys/revoke            202  202     202   202      202     202     202     202    202      202   202
GET /api/v1/apikeys/{id}/change-history               U I I D E I F 200 200 200 200
GET /api/v1/apikeys/{id}/change-history/{version}     U I I D E I F 200 200 200 200
GET /api/v1/apikeys/{id}/change-history/compare       U I I D E I F 200 200 200 200
GET /api/v1/security-events                           U I I D E I F 200 200 200 200
GET /api/v1/apikeys/{id}/usage                        U I I D E I F 200 200 200 200
GET /api/v1/usage/top                                 U I I D E I F 200 200 200 200
GET /api/v1/roles/{id}                                U I I D E I F 200 200 200 200
POST /api/v1/roles                                    U I I D E I F F F 201 201
PUT /api/v1/roles/{id}                                U I I D E I F F F 200 200
PATCH /api/v1/roles/{id}                              U I I D E I F F F 200 200
DELETE /api/v1/roles/{id}                             U I I D E I F F F 204 204
GET /api/v1/roles/{id}/change-history                 U I I D E I F 200 200 200 200
POST /api/v1/apikeys/verify                           U I I D E I F F 200 200 200
GET /api/v1/apikeys/verify/events                     U I I D E I F F 200 200 200
HEAD /api/v1/apikeys/{id}                             401 401 401 401 401 401 403 200 200 200 200
GET /api/v1/webhooks                                  U I I D E I F F F 200 200
POST /api/v1/webhooks                                 U I I D E I F F F 201 201
GET /api/v1/webhooks/{id}                             U I I D E I F F F 200 200
PUT /api/v1/webhooks/{id}                             U I I D E I F F F 200 200
PATCH /api/v1/webhooks/{id}                           U I I D E I F F F 200 200
DELETE /api/v1/webhooks/{id}                          U I I D E I F F F 204 204
POST /api/v1/webhooks/{id}/enable                     U I I D E I F F F 200 200
POST /api/v1/webhooks/{id}/disable                    U I I D E I F F F 200 200
POST /api/v1/webhooks/{id}/rotate-secret              U I I D E I F F F 200 200
POST /api/v1/webhooks/{id}/test                       U I I D E I F F F 200 200
GET /api/v1/webhooks/{id}/deliveries                  U I I D E I F F F 200 200
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
  // Webhooks on, pointing at a port where nothing listens (a test ping fails at once).
  app = await buildTestApp({
    env: { JIM_INFRASTRUCTURE_API_KEY: INFRA, METRICS_ENABLED: 'true', WEBHOOK_SECRET_KEY: 'cd'.repeat(32), WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32' },
  });
  await app.listen({ host: '127.0.0.1', port: 0 }); // the event stream never ends: its successes are read over a socket
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

let roleNames = 0;
/** A fresh role of one's own per cell (role routes' {id}). */
async function targetRole(): Promise<number> {
  return (await app.services.roles.create(SYSTEM_ACTOR, { name: `m-role-${++roleNames}`, permissions: ['m.read'] })).role.id;
}

/** A fresh subscription per cell (webhook routes' {id}). */
async function targetWebhook(): Promise<string> {
  return (await app.services.webhooks.create({ url: HOOK_URL, eventTypes: ['apikey.expired'] })).webhook.id;
}
const HOOK_URL = 'http://127.0.0.1:9/hook';

function payloadFor(method: string, path: string) {
  if (path.includes('/webhooks')) {
    if (path.endsWith('/rotate-secret')) return { gracePeriodSeconds: 60 };
    if (method === 'POST' && path.endsWith('/webhooks')) return { url: HOOK_URL, eventTypes: ['apikey.expired'] };
    if (method === 'PUT') return { url: HOOK_URL, eventTypes: ['apikey.expired', 'apikey.expiring'] };
    if (method === 'PATCH') return { description: 'patched' };
    return undefined;
  }
  if (path.endsWith('/verify')) return { key: 'not-a-key' };
  if (path.endsWith('/revoke')) return { keys: ['not-a-key'] };
  if (path.endsWith('/rotate')) return { gracePeriodSeconds: 60 };
  if (path.includes('/roles')) {
    if (method === 'POST' || method === 'PUT') return { name: `m-role-${++roleNames}`, permissions: ['m.read'] };
    if (method === 'PATCH') return { description: 'patched' };
    return undefined;
  }
  if (method === 'POST') return { name: 'm-created', roleIds: [READER] };
  if (method === 'PUT') return { name: 'm-replaced', roleIds: [READER], isEnabled: true };
  if (method === 'PATCH') return { description: 'patched' };
  return undefined;
}

/** Roles and their history: what a refused role change must leave as it was. */
const roleState = () => sql(dbUrl, 'SELECT r.*, (SELECT count(*)::int FROM role_changes c WHERE c.role_id = r.id) AS history FROM roles r ORDER BY id');

describe('every route × every caller', () => {
  it('lists every route the app registers (a new route fails here until it has its row)', () => {
    const missing = missingRoutes(routesOf(app), ROUTES.map((r) => [r.method, r.path]), (r) => isExplorer(r.path) || isConsole(r.path) || r.path === '/openapi.json');
    expect(missing, 'routes without a row in the table above').toEqual([]);
  });

  it('protects exactly the routes whose schema says so (the document and the hooks agree)', () => {
    const disagree = routesOf(app).filter((r) => (r.authorizes !== undefined) !== r.declaresSecurity);
    expect(disagree.map((r) => `${r.method} ${r.path}`)).toEqual([]);
  });

  it('has the status and code of its cell, and refusals change nothing', async () => {
    expect(CALLERS).toHaveLength(11);
    const seen: string[] = [];
    for (const route of ROUTES) {
      expect(route.cells, route.path).toHaveLength(CALLERS.length);
      for (const [i, caller] of CALLERS.entries()) {
        const id = route.path.includes('/roles/{id}') ? String(await targetRole()) : route.path.includes('/webhooks/{id}') ? await targetWebhook() : (await target()).id;
        let url = route.path.replace('{id}', id).replace('{version}', '1');
        if (url.endsWith('/compare')) url += '?fromVersion=1&toVersion=1';
        const payload = payloadFor(route.method, route.path);
        const before = await apiVisibleState(dbUrl);
        const rolesBefore = await roleState();
        const cell = route.cells[i];
        const where = `${route.method} ${route.path} as ${caller}`;
        if (url.endsWith('/verify/events') && !(cell in CODES)) {
          const port = (app.server.address() as AddressInfo).port;
          const stream = await openSse(`http://127.0.0.1:${port}${url}`, callers[caller]['x-api-key']);
          expect(stream.status, where).toBe(Number(cell));
          expect(stream.headers['content-type'], where).toMatch(/^text\/event-stream/);
          stream.close();
          seen.push(`${route.method} ${route.path} ${caller} ${stream.status}`);
          continue;
        }
        const res = await app.inject({ method: route.method as 'GET', url, headers: { ...callers[caller], ...(payload ? json : {}) }, payload });
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
          expect(await roleState(), where).toEqual(rolesBefore);
        } else {
          expect(res.statusCode, `${where}: ${res.body.slice(0, 200)}`).toBe(Number(cell));
        }
        seen.push(`${route.method} ${route.path} ${caller} ${res.statusCode}`);
      }
    }
    expect(seen).toHaveLength(ROUTES.length * CALLERS.length);
  }, 120_000);
});

// The escalation guard's containment: what a caller whose own key expires, or who lacks "*",
// may do to expiries and to keys someone else disabled. Callers: an Operator key expiring in an
// hour, an Operator key that never expires, an Administrator key expiring in an hour. Each cell
// gets fresh keys (a cell may change its caller's own key).
const CONTAINMENT = `
action                                                     op-1h  op     admin-1h
self.PATCH {"expiresAt":null}                              F      200    200
self.PATCH {"expiresAt":"+2h"}                             F      200    200
self.PATCH {"expiresAt":"+30m"}                            200    200    200
POST {"name":"c","roleIds":[3]}                            F      201    201
POST {"name":"c","roleIds":[3],"expiresAt":"+2h"}          F      201    201
POST {"name":"c","roleIds":[3],"expiresAt":"+30m"}         201    201    201
never.PATCH {"description":"d"}                            200    200    200
never.PUT {"name":"n","roleIds":3,"isEnabled":true}        200    200    200
never.PATCH {"expiresAt":"+2h"}                            200    200    200
in3h.PATCH {"expiresAt":"+2h"}                             200    200    200
in3h.PATCH {"expiresAt":"+4h"}                             F      200    200
in3h.PATCH {"expiresAt":null}                              F      200    200
byAdmin.PATCH {"isEnabled":true}                           F      F      200
byOperator.PATCH {"isEnabled":true}                        F      200    200
byUnknown.PATCH {"isEnabled":true}                         F      F      200
byAdmin.PUT {"name":"n","roleIds":3,"isEnabled":true}      F      F      200
byAdmin.PATCH {"description":"still disabled"}             200    200    200
never.PATCH {"roleIds":[2]}                                F      200    200
never.PATCH {"roleIds":[2],"expiresAt":"+30m"}             200    200    200
in3h.PATCH {"roleIds":[3]}                                 200    200    200
byOperator.PATCH {"isEnabled":true,"expiresAt":"+2h"}      F      200    200
byOperator.PATCH {"isEnabled":true,"expiresAt":"+30m"}     200    200    200
byOperatorNever.PATCH {"isEnabled":true}                   F      200    200
`;

describe('the escalation guard contains expiries and re-enabling', () => {
  const HOUR = 3_600_000;
  const rel = (v: unknown) => (typeof v === 'string' && /^\+\d+[hm]$/.test(v) ? new Date(Date.now() + Number(v.slice(1, -1)) * (v.endsWith('h') ? HOUR : 60_000)).toISOString() : v);

  it('has the status and code of its cell, and refusals change nothing', async () => {
    const [head, ...lines] = CONTAINMENT.trim().split('\n').map((l) => l.trim());
    const callerNames = head.split(/\s+/).slice(1);
    expect(callerNames).toEqual(['op-1h', 'op', 'admin-1h']);
    const admin = await seedKey(app, { roleIds: [ADMIN], name: 'c-admin' });
    const operatorKey = await seedKey(app, { roleIds: [OPERATOR], name: 'c-operator' });
    for (const line of lines) {
      const m = /^(?:(\w+)\.)?(POST|PATCH|PUT)\s+(\{.*\})\s+(\S+)\s+(\S+)\s+(\S+)$/.exec(line);
      expect(m, line).not.toBeNull();
      const [, targetKind, method, bodyText, ...cells] = m!;
      for (const [i, caller] of callerNames.entries()) {
        const soon = new Date(Date.now() + HOUR).toISOString();
        const me = await seedKey(app, { roleIds: [caller.startsWith('admin') ? ADMIN : OPERATOR], name: `c-${caller}`, expiresAt: caller.endsWith('1h') ? soon : undefined });
        let targetId: string | undefined;
        if (targetKind === 'self') targetId = me.id;
        else if (targetKind === 'never') targetId = (await seedKey(app, { roleIds: [READER], name: 'c-never' })).id;
        else if (targetKind === 'in3h') targetId = (await seedKey(app, { roleIds: [READER], name: 'c-3h', expiresAt: new Date(Date.now() + 3 * HOUR).toISOString() })).id;
        else if (targetKind?.startsWith('by')) {
          // Disabled keys expire in 3 h unless "Never": re-enabling one is judged against the caller's expiry.
          const expiresAt = targetKind.endsWith('Never') ? undefined : new Date(Date.now() + 3 * HOUR).toISOString();
          targetId = (await seedKey(app, { roleIds: [READER], name: 'c-disabled', expiresAt })).id;
          if (targetKind === 'byUnknown') await sql(dbUrl, 'UPDATE api_keys SET is_enabled = false WHERE id = $1', [targetId]);
          else {
            const by = targetKind === 'byAdmin' ? admin : operatorKey; // byOperator, byOperatorNever
            const off = await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${targetId}`, headers: { ...by.headers, ...json }, payload: { isEnabled: false } });
            expect(off.statusCode).toBe(200);
          }
        }
        const body = Object.fromEntries(Object.entries(JSON.parse(bodyText) as Record<string, unknown>).map(([k, v]) => [k, rel(v)]));
        const url = targetId ? `/api/v1/apikeys/${targetId}` : '/api/v1/apikeys';
        const before = await apiVisibleState(dbUrl);
        const res = await app.inject({ method: method as 'POST', url, headers: { ...me.headers, ...json }, payload: body });
        const where = `${line.split(/\s{2,}/)[0]} as ${caller}`;
        if (cells[i] === 'F') {
          expect(res.statusCode, `${where}: ${res.body}`).toBe(403);
          expect(res.json().code, where).toBe('FORBIDDEN');
          expect(res.json().detail, where).toMatch(
            /^(Your key expires at .*: (it cannot give a key (no expiry|a later expiry)\. Set expiresAt to .* or earlier\.|a key it gives more permissions to, or enables, must expire by then too\. .*)|This key was disabled by a caller with permissions your key does not have \(.*\); only such a caller can enable it again\.)$/,
          );
          expect(await apiVisibleState(dbUrl), where).toEqual(before);
        } else {
          expect(res.statusCode, `${where}: ${res.body}`).toBe(Number(cells[i]));
        }
      }
    }
  }, 120_000);
});
