// Property-based input testing (fast-check): arbitrary and near-valid requests against every
// route. Properties: never a 5xx; every 4xx is problem+json with a code; a rejected request
// changes nothing a client can see; no response but a creation carries a full key.
// CI runs FUZZ_RUNS (default 1200) cases per property with a fixed seed; `npm run fuzz` runs
// more (FUZZ_RUNS=20000, FUZZ_SEED to replay a failure).
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, routesOf, testDatabase } from './helpers/app.js';
import { isConsole, missingRoutes } from './helpers/routes.js';
import { ADMIN, apiVisibleState, READER, seedKey, type SeededKey, VISIBLE_STATE } from './helpers/keys.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 1200);
const SEED = Number(process.env.FUZZ_SEED ?? 20261126);

let app: App;
let dbUrl: string;
let admin: SeededKey;
let reader: SeededKey;
let target: SeededKey;
const secrets = () => [admin.secret, reader.secret, target.secret];

let db: pg.Client;
/** apiVisibleState over one connection (a connection per snapshot would dominate the run). */
const snapshot = async () => (await db.query(VISIBLE_STATE)).rows;

beforeAll(async () => {
  // Metrics on, so GET /metrics is one of the routes under test.
  // Webhooks on (their routes answer 503 without a key), towards nothing that listens.
  app = await buildTestApp({ env: { METRICS_ENABLED: 'true', WEBHOOK_SECRET_KEY: 'ab'.repeat(32), WEBHOOK_TIMEOUT_MS: '300' } });
  dbUrl = (await testDatabase()).url;
  db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  expect(await snapshot()).toEqual(await apiVisibleState(dbUrl)); // the same view as the helper's
  admin = await seedKey(app, { roleIds: [ADMIN], name: 'fuzz-admin' });
  reader = await seedKey(app, { roleIds: [READER], name: 'fuzz-reader' });
  target = await seedKey(app, { roleIds: [READER], name: 'fuzz-target', description: 'the key id routes point at' });
});

afterAll(async () => {
  await db?.end();
});

// ---- building blocks -------------------------------------------------------------------------

/** Strings that break things: unicode edge cases, control characters, huge and empty. */
const nasty = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }), // lone surrogates included
  fc.constantFrom('', ' ', '\u0000', 'a\u0000b', '\u202Eevil', 'zero\u200Bwidth', '\uFEFF', '\uD800', '\uDFFF', 'é'.normalize('NFD'), '🔑'.repeat(300), 'x'.repeat(70_000), '%00', '../../etc/passwd', '<script>', "' OR 1=1 --", '*', '?', '%', '_'),
);
const weirdNumber = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, 2 ** 31, 2 ** 53, -(2 ** 63), Number.MAX_VALUE, 1e308, -0, 1.5));
const jsonValue = fc.oneof(fc.jsonValue({ maxDepth: 3 }), nasty, weirdNumber, fc.constant(null), fc.boolean());
const timestamp = fc.oneof(
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('2030-01-01T00:00:00Z', '2030-01-01', '2030-13-40T25:61:61Z', '1970-01-01T00:00:00.0000000Z', 'tomorrow', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59.9999999+14:00'),
  jsonValue,
);

/** A valid create/patch body: the baseline the near-valid ones are one mutation away from. */
const validBody = fc.record(
  {
    name: fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/),
    description: fc.oneof(fc.string({ maxLength: 50 }), fc.constant(null)),
    roleIds: fc.uniqueArray(fc.constantFrom(1, 2, 3, 4), { maxLength: 3 }),
    isEnabled: fc.boolean(),
    expiresAt: fc.oneof(fc.constant(null), fc.date({ min: new Date('2030-01-01'), max: new Date('2090-01-01'), noInvalidDate: true }).map((d) => d.toISOString())),
    changeReason: fc.string({ maxLength: 40 }),
    allowedCidrs: fc.oneof(fc.constant(null), fc.uniqueArray(fc.constantFrom('10.0.0.0/8', '192.0.2.0/24', '2001:db8::/32', '127.0.0.0/8', '::1/128'), { maxLength: 3 })),
    rateLimit: fc.oneof(fc.constant(null), fc.record({ limit: fc.integer({ min: 1, max: 10_000 }), windowSeconds: fc.integer({ min: 1, max: 86_400 }) })),
    gracePeriodSeconds: fc.integer({ min: 0, max: 86_400 }),
  },
  { requiredKeys: ['name'] },
);
const nearValid = fc
  .tuple(
    validBody,
    fc.constantFrom('name', 'description', 'roleIds', 'isEnabled', 'expiresAt', 'changeReason', 'allowedCidrs', 'rateLimit', 'gracePeriodSeconds', 'keys', 'source', 'extra'),
    fc.oneof(jsonValue, fc.constantFrom(['10.0.0.1/8'], ['2001:DB8::/32'], ['10.0.0.1'], '10.0.0.0/8', { limit: 0, windowSeconds: 1 }, { limit: 1 }, -1, 86_401)),
  )
  .map(
  ([b, field, value]) => ({ ...b, [field]: value }),
);

/** Bodies near the real ones (right names, wrong values, extra and dangerous keys), or anything. */
const body = fc.oneof(
  { weight: 3, arbitrary: validBody },
  { weight: 3, arbitrary: nearValid },
  fc
    .record(
      {
        name: fc.oneof(nasty, jsonValue),
        description: fc.oneof(nasty, jsonValue),
        roleIds: fc.oneof(fc.array(fc.oneof(fc.integer({ min: -3, max: 6 }), weirdNumber, jsonValue), { maxLength: 6 }), jsonValue),
        isEnabled: fc.oneof(fc.boolean(), jsonValue),
        expiresAt: timestamp,
        changeReason: fc.oneof(nasty, jsonValue),
      },
      { requiredKeys: [] },
    )
    .chain((o) =>
      fc.constantFrom<Record<string, unknown>>(
        o,
        { ...o, unknownField: 1 },
        JSON.parse(`{"__proto__": {"isEnabled": false}, "name": "proto"}`),
        JSON.parse(`{"constructor": {"prototype": {"x": 1}}, "name": "ctor"}`),
      ),
    ),
  jsonValue,
  fc.integer({ min: 1, max: 2000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
  // Leaked-key reports: of nothing real, or of the target's own secret (then it is disabled).
  fc.record({ keys: fc.array(fc.oneof(nasty, fc.constant(0).map(() => target.secret)), { maxLength: 4 }), source: fc.oneof(nasty, jsonValue) }, { requiredKeys: [] }),
);

/** Raw JSON text no JSON.stringify produces: deep nesting, numbers out of every range. */
const rawJson = fc.oneof(
  fc.integer({ min: 1, max: 30_000 }).map((d) => '['.repeat(d) + ']'.repeat(d)),
  fc.integer({ min: 1, max: 5_000 }).map((d) => `{"name":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}`),
  fc.constantFrom('{"name":"n","roleIds":[1e400]}', '{"name":"n","roleIds":[18446744073709551617]}', '{"name":1e400}', '{"name":"n","isEnabled":-0}', '{"name":"\\ud800"}', '{"name":"a\\u0000b"}'),
);

/** The raw payload: JSON of the body, truncated JSON, or not JSON at all. */
const payload = fc.oneof(
  rawJson,
  { weight: 4, arbitrary: body.map((b) => JSON.stringify(b) ?? 'null') },
  body.chain((b) => {
    const text = JSON.stringify(b) ?? 'null';
    return fc.integer({ min: 0, max: Math.max(0, text.length - 1) }).map((n) => text.slice(0, n));
  }),
  fc.constantFrom('', '{', '{"name":"dup","name":"dup2"}', '{"name": "a",}', 'null', '[]', '"string"', '\u0000'),
  fc.string(),
);

const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/merge-patch+json',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=latin1',
  '',
  ),
);

/** Header values a client could send (HTTP allows visible ASCII, space and tab; latin1 too). */
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 300 });

const credentials = fc.oneof(
  fc.constant<Record<string, string | string[]>>({}),
  // Mostly valid keys, so validation and the handlers behind authentication get fuzzed too.
  { weight: 8, arbitrary: fc.constantFrom('admin', 'reader').map((who) => ({ 'x-api-key': (who === 'admin' ? admin : reader).secret })) },
  headerText.map((v) => ({ 'x-api-key': v })),
  headerText.map((v) => ({ authorization: v })),
  headerText.map((v) => ({ authorization: `Bearer ${v}` })),
  fc.constant(0).map(() => ({ 'x-api-key': `${admin.secret.slice(0, 16)}${'A'.repeat(admin.secret.length - 16)}` })), // real prefix, wrong secret
  fc.constant(0).map(() => ({ 'x-api-key': admin.secret, authorization: `Bearer ${reader.secret}` })),
  fc.constant(0).map(() => ({ 'x-api-key': `${admin.secret} ` })),
  fc.constant(0).map(() => ({ 'x-api-key': admin.secret.toUpperCase() })),
  // Repeated headers.
  fc.constant(0).map(() => ({ 'x-api-key': [admin.secret, admin.secret] })),
  fc.constant(0).map(() => ({ 'x-api-key': [admin.secret, reader.secret] })),
  fc.constant(0).map(() => ({ authorization: [`Bearer ${admin.secret}`, 'Basic eDp5'] })),
);

/** Conditional and preference headers the write routes read. */
const extraHeaders = fc.record(
  {
    'if-match': fc.oneof(fc.constantFrom('*', '"1"', '"2"', 'W/"1"', '"1", "2"', ''), headerText),
    prefer: fc.oneof(fc.constantFrom('return=representation', 'return=minimal', 'handling=strict'), headerText),
  },
  { requiredKeys: [] },
);

/** Percent-encoding; a lone surrogate becomes the bytes of one (invalid UTF-8 on the wire). */
const enc = (text: string) => {
  try {
    return encodeURIComponent(text);
  } catch {
    return '%ED%A0%80';
  }
};

const id = fc.oneof(
  fc.constant(0).map(() => target.id),
  fc.uuid().map((u) => u),
  fc.constant(0).map(() => randomUUID().toUpperCase()),
  fc.constantFrom('1', '5', '100', '101', '0', '2147483648'), // role ids
  nasty.map((s) => enc(s).slice(0, 300)),
  fc.constantFrom('00000000-0000-0000-0000-000000000000', '..', '%2e%2e', 'null', '-1', '1e9'),
);

const queryValue = fc.oneof(nasty.map((s) => s.slice(0, 500)), weirdNumber.map(String), fc.constantFrom('true', 'false', '', '*', '10000', '-1'));
const query = fc
  .array(fc.tuple(fc.constantFrom('name', 'isEnabled', 'limit', 'cursor', 'changeReason', 'fromVersion', 'toVersion', 'from', 'to', 'reason', 'ip', 'interval', 'unusedSince', 'x'), queryValue), { maxLength: 5 })
  .map((pairs) => pairs.map(([k, v]) => `${k}=${enc(v)}`).join('&'));

const ROUTES: Array<[string, string]> = [
  ['GET', '/api/v1/apikeys'],
  ['POST', '/api/v1/apikeys'],
  ['GET', '/api/v1/apikeys/{id}'],
  ['PUT', '/api/v1/apikeys/{id}'],
  ['PATCH', '/api/v1/apikeys/{id}'],
  ['DELETE', '/api/v1/apikeys/{id}'],
  ['POST', '/api/v1/apikeys/{id}/rotate'],
  ['POST', '/api/v1/apikeys/revoke'],
  ['GET', '/api/v1/apikeys/{id}/change-history'],
  ['GET', '/api/v1/apikeys/{id}/change-history/{version}'],
  ['GET', '/api/v1/apikeys/{id}/change-history/compare'],
  ['GET', '/api/v1/security-events'],
  ['GET', '/api/v1/apikeys/{id}/usage'],
  ['GET', '/api/v1/usage/top'],
  ['GET', '/api/v1/userinfo'],
  ['GET', '/api/v1/roles'],
  ['GET', '/api/v1/roles/{id}'],
  ['POST', '/api/v1/roles'],
  ['PUT', '/api/v1/roles/{id}'],
  ['PATCH', '/api/v1/roles/{id}'],
  ['DELETE', '/api/v1/roles/{id}'],
  ['GET', '/api/v1/roles/{id}/change-history'],
  ['POST', '/api/v1/apikeys/verify'],
  ['GET', '/api/v1/webhooks'],
  ['POST', '/api/v1/webhooks'],
  ['GET', '/api/v1/webhooks/{id}'],
  ['PUT', '/api/v1/webhooks/{id}'],
  ['PATCH', '/api/v1/webhooks/{id}'],
  ['DELETE', '/api/v1/webhooks/{id}'],
  ['POST', '/api/v1/webhooks/{id}/enable'],
  ['POST', '/api/v1/webhooks/{id}/disable'],
  ['POST', '/api/v1/webhooks/{id}/rotate-secret'],
  ['POST', '/api/v1/webhooks/{id}/test'],
  ['GET', '/api/v1/webhooks/{id}/deliveries'],
  ['GET', '/api/v1/health'],
  ['GET', '/api/v1/health/live'],
  ['GET', '/api/v1/health/version'],
  ['GET', '/'],
  ['GET', '/metrics'],
  ['GET', '/openapi.json'],
  ['GET', '/docs'],
  ['GET', '/docs/json'],
  ['GET', '/docs/yaml'],
  ['POST', '/api/apikeys'],
  ['GET', '/api/apikeys/{id}'],
  ['PUT', '/api/apikeys/{id}'],
  ['PATCH', '/api/apikeys/{id}'],
  ['DELETE', '/api/apikeys/{id}'],
  ['GET', '/api/apikeys/{id}/change-history'],
  ['GET', '/api/security-events'],
  ['GET', '/api/userinfo'],
  ['OPTIONS', '/api/v1/apikeys'],
  ['HEAD', '/api/v1/apikeys'],
  ['HEAD', '/api/v1/apikeys/{id}'],
  ['OPTIONS', '/api/v1/apikeys/{id}'],
  ['TRACE', '/api/v1/apikeys'],
];

const request = fc.record({
  route: fc.constantFrom(...ROUTES),
  id,
  version: fc.oneof(fc.integer({ min: -2, max: 5 }).map(String), nasty.map((s) => enc(s).slice(0, 50))),
  query,
  credentials,
  extraHeaders,
  contentType,
  payload,
  withBody: fc.boolean(),
});

// ---- the properties ------------------------------------------------------------------------

/** Every secret that exists: the seeded ones and every key a fuzzed request created. */
const created: string[] = [];
let cases = 0;
const statuses = new Map<number, number>();

type Request = typeof request extends fc.Arbitrary<infer T> ? T : never;

async function send(r: Request) {
  const [method, template] = r.route;
  const url = template.replace('{id}', r.id).replace('{version}', r.version) + (r.query ? `?${r.query}` : '');
  const headers: Record<string, string | string[]> = { ...r.extraHeaders, ...r.credentials };
  if (r.contentType) headers['content-type'] = r.contentType;
  return app.inject({ method: method as 'GET', url, headers, payload: r.withBody || method === 'POST' || method === 'PUT' || method === 'PATCH' ? r.payload : undefined });
}

describe(`fuzzed requests (${RUNS} per property, seed ${SEED})`, () => {
  it('reach every route the app registers (a new route fails here until it is in ROUTES)', () => {
    // The explorer's static files are one wildcard route of Swagger UI's; its pages are listed.
    // The verify event stream never ends for a valid key: test/verify.test.ts and the security matrix read it over a socket.
    // The web console's page and files take no input but their path: test/console.test.ts checks them.
    const missing = missingRoutes(routesOf(app), ROUTES, (r) => r.path.startsWith('/docs/static/') || isConsole(r.path) || r.path.endsWith('/apikeys/verify/events'));
    expect(missing, 'routes the fuzz never sends to').toEqual([]);
  });

  it('never a 5xx; every 4xx is problem+json with a code; a rejected request changes nothing; no full key but in a creation', async () => {
    try {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        cases++;
        const before = await snapshot();
        const res = await send(r);
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        expect(res.statusCode, `${r.route.join(' ')} → ${res.statusCode} ${res.body.slice(0, 300)}`).toBeLessThan(500);
        if (res.statusCode >= 400) {
          expect(res.headers['content-type']).toBe('application/problem+json');
          if (r.route[0] !== 'HEAD') expect(typeof res.json().code).toBe('string');
          expect(await snapshot()).toEqual(before);
        }
        const creation = res.statusCode === 201 && r.route[0] === 'POST';
        const own = creation ? (res.json() as { key: string }).key : undefined;
        if (creation) expect(own).toMatch(/^jim_ak_[0-9a-f]{32,}$/);
        // A secret shows in its own creation response only (its part after the prefix, even).
        const visible = res.body + JSON.stringify(res.headers);
        for (const s of [...secrets(), ...created]) if (s !== own) expect(visible).not.toContain(s.slice(16));
        if (own) created.push(own);
        // Keep a key for the id routes to aim at.
        if (r.route[0] === 'DELETE' && r.id === target.id && res.statusCode < 300) {
          target = await seedKey(app, { roleIds: [READER], name: 'fuzz-target' });
        }
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    } finally {
      console.log(`[fuzz] ${cases} requests (seed ${SEED}); statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
    }
    expect(cases).toBeGreaterThanOrEqual(RUNS);
  }, 600_000);
});
