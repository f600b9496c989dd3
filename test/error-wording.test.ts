// The words of errors are user interface: JIM's cmdlets print `message` (plus a "  - field: msg"
// line per validationErrors entry), the CLI prints `detail`. Each says which field broke which
// rule, in plain words, and changes nothing.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, apiVisibleState, json, READER, seedKey, type SeededKey } from './helpers/keys.js';

let app: App;
let dbUrl: string;
let admin: SeededKey;
let target: SeededKey;

beforeAll(async () => {
  app = await buildTestApp();
  dbUrl = (await testDatabase()).url;
  admin = await seedKey(app, { name: 'wording-admin', roleIds: [ADMIN] });
  target = await seedKey(app, { name: 'wording-target', roleIds: [READER] });
});

/** What Invoke-JIMApi shows for an error body: message, then each validationErrors line. */
function asJimShowsIt(body: { message: string; validationErrors?: Record<string, string[]> }) {
  const lines = Object.entries(body.validationErrors ?? {}).flatMap(([field, msgs]) => msgs.map((m) => `  - ${field}: ${m}`));
  return [body.message, ...lines].join('\n');
}

async function send(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, body?: unknown, headers: Record<string, string> = {}) {
  const before = await apiVisibleState(dbUrl);
  const res = await app.inject({ method, url, headers: { ...admin.headers, ...json, ...headers }, payload: body === undefined ? undefined : JSON.stringify(body) });
  expect(res.statusCode).toBe(400);
  expect(res.headers['content-type']).toBe('application/problem+json');
  const problem = res.json();
  expect(problem.code).toBe('VALIDATION_FAILED');
  expect(problem.message).toBe(problem.detail);
  expect(await apiVisibleState(dbUrl)).toEqual(before); // nothing changed
  return problem;
}

describe('validation errors name the field and the rule', () => {
  it('a past expiresAt on create: "expiresAt must be in the future"', async () => {
    const p = await send('POST', '/api/v1/apikeys', { name: 'late', expiresAt: '2001-01-01T00:00:00Z' });
    expect(p.detail).toBe('expiresAt must be in the future');
    expect(p.errors).toEqual([{ field: 'expiresAt', message: 'must be in the future' }]);
    expect(asJimShowsIt(p)).toBe('expiresAt must be in the future\n  - expiresAt: must be in the future');
  });

  it('a missing field: "roleIds is required"', async () => {
    const p = await send('PUT', `/api/v1/apikeys/${target.id}`, { name: 'x', isEnabled: true });
    expect(p.detail).toBe('roleIds is required');
    expect(p.validationErrors).toEqual({ roleIds: ['is required'] });
  });

  it('several problems at once are all named, in order', async () => {
    const p = await send('PUT', `/api/v1/apikeys/${target.id}`, { description: 7 });
    expect(p.detail).toBe('name is required; description must be a string, not a number; roleIds is required; isEnabled is required');
  });

  it.each([
    ['tomorrow'],
    ['2027-02-24'],
    ['2027-02-24T10:00:00'],
    ['24/02/2027 10:00'],
    ['2027-02-29T10:00:00Z'],
  ])('a bad date (%s) names the format with an example', async (value) => {
    const p = await send('POST', '/api/v1/apikeys', { name: 'x', expiresAt: value });
    expect(p.detail).toBe('expiresAt must be an RFC 3339 date-time with an offset, e.g. 2027-02-24T10:00:00Z');
  });

  it('a date outside the representable range says which range', async () => {
    const p = await send('PATCH', `/api/v1/apikeys/${target.id}`, { expiresAt: '1969-12-31T23:59:59Z' });
    expect(p.detail).toBe('expiresAt must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z');
  });

  it('an unknown field suggests the known one it resembles', async () => {
    const p = await send('POST', '/api/v1/apikeys', { name: 'x', roleIDs: [3] });
    expect(p.detail).toBe('unknown field roleIDs (did you mean roleIds?)');
    expect(p.errors).toEqual([{ field: 'roleIDs', message: 'is not a known field (did you mean roleIds?)' }]);
    const typo = await send('PATCH', `/api/v1/apikeys/${target.id}`, { isEnabeld: false });
    expect(typo.detail).toBe('unknown field isEnabeld (did you mean isEnabled?)');
  });

  it('an unknown field that resembles nothing lists the known ones', async () => {
    const p = await send('POST', '/api/v1/apikeys', { name: 'x', colour: 'red' });
    expect(p.detail).toBe('unknown field colour (known fields: name, description, roleIds, isEnabled, expiresAt, metadata, allowedCidrs, rateLimit, changeReason)');
  });

  it('types are named without echoing the value (it could be a secret in the wrong field)', async () => {
    const secret = 'jim_ak_0123456789abcdef0123456789abcdef';
    const p = await send('PATCH', `/api/v1/apikeys/${target.id}`, { isEnabled: secret });
    expect(p.detail).toBe('isEnabled must be true or false, not a string');
    expect(JSON.stringify(p)).not.toContain(secret);
    expect((await send('PATCH', `/api/v1/apikeys/${target.id}`, { isEnabled: null })).detail).toBe('isEnabled must be true or false, not null');
  });

  it('text rules', async () => {
    expect((await send('POST', '/api/v1/apikeys', { name: '  ' })).detail).toBe('name must not be blank');
    expect((await send('POST', '/api/v1/apikeys', { name: 'x'.repeat(201) })).detail).toBe('name must have at most 200 characters');
    expect((await send('POST', '/api/v1/apikeys', { name: 'a\tb' })).detail).toBe('name must not contain control characters (no tabs or newlines either)');
    expect((await send('POST', '/api/v1/apikeys', { name: 'x', description: 'ding\u0007' })).detail).toBe(
      'description must not contain control characters (tab and newlines are allowed)',
    );
  });

  it('role ids: the element, the form, and unknown ones (in JIM\'s words)', async () => {
    expect((await send('POST', '/api/v1/apikeys', { name: 'x', roleIds: [3, 0] })).detail).toBe('roleIds[1] must be a role id (a whole number from 1 to 2147483647)');
    expect((await send('POST', '/api/v1/apikeys', { name: 'x', roleIds: [3, 3] })).detail).toBe('roleIds must not repeat a role id');
    expect((await send('PUT', `/api/v1/apikeys/${target.id}`, { name: 'x', isEnabled: true, roleIds: '3' })).detail).toBe(
      'roleIds must be an array of role ids (e.g. [1, 3]), a single role id, or null for none',
    );
    const unknown = await send('POST', '/api/v1/apikeys', { name: 'x', roleIds: [99, 77] });
    expect(unknown.detail).toBe('One or more role IDs are invalid: 99, 77.');
    expect(unknown.errors).toEqual([{ field: 'roleIds', message: 'names roles that do not exist: 99, 77 (GET /api/v1/roles lists them)' }]);
  });

  it('on PUT and PATCH, roleIds in the right form is judged by its own rules', async () => {
    const put = (roleIds: unknown) => send('PUT', `/api/v1/apikeys/${target.id}`, { name: 'x', isEnabled: true, roleIds });
    expect((await put([3, 3])).detail).toBe('roleIds must not repeat a role id');
    expect((await put(Array.from({ length: 101 }, (_, i) => i + 1))).detail).toBe('roleIds must list at most 100 role ids');
    expect((await put(0)).detail).toBe('roleIds must be a role id (a whole number from 1 to 2147483647)');
    expect((await put(1.5)).detail).toBe('roleIds must be a role id (a whole number from 1 to 2147483647)');
    expect((await send('PATCH', `/api/v1/apikeys/${target.id}`, { roleIds: [1, 'x'] })).detail).toBe('roleIds[1] must be a number, not a string');
  });

  it.each(['constructor', 'toString', 'hasOwnProperty', 'valueOf'])('a field called %s is an unknown field like any other (not a 500)', async (field) => {
    const p = await send('POST', '/api/v1/apikeys', { name: 'x', [field]: 1 });
    expect(p.errors).toEqual([{ field, message: expect.stringMatching(/^is not a known field/) }]);
    expect(p.validationErrors[field]).toEqual([p.errors[0].message]);
    expect((await send('GET', `/api/v1/apikeys?${field}=1`)).errors[0].field).toBe(field);
  });

  it('an unknown name that looks like a key, or is long, is not repeated', async () => {
    const secret = `jim_ak_${'ab'.repeat(32)}`;
    for (const p of [await send('POST', '/api/v1/apikeys', { name: 'x', [secret]: true }), await send('GET', `/api/v1/apikeys?${secret}`)]) {
      expect(JSON.stringify(p)).not.toContain(secret);
      expect(p.detail).toMatch(/^unknown (field|query parameter) \(its name is not repeated: it is long or looks like a key\)/);
    }
    const long = 'x'.repeat(65);
    expect(JSON.stringify(await send('POST', '/api/v1/apikeys', { name: 'x', [long]: 1 }))).not.toContain(long);
  });

  it('thousands of unknown fields: ten are named, the rest counted, and the reply stays small', async () => {
    const body: Record<string, number> = { name: 1 as unknown as number };
    for (let i = 0; i < 5000; i++) body[`f${i}`] = i;
    const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: JSON.stringify(body) });
    expect(res.statusCode).toBe(400);
    expect(res.payload.length).toBeLessThan(16_000);
    const p = res.json();
    expect(p.errors).toHaveLength(12); // name, ten unknown fields, and the count
    expect(p.errors[0]).toEqual({ field: 'name', message: 'must be a string, not a number' });
    expect(p.detail).toMatch(/; and 4990 more unknown fields$/);
  });

  it('hundreds of bad elements: at most twenty problems, then a count', async () => {
    const p = await send('POST', '/api/v1/apikeys', { name: 'x', roleIds: Array.from({ length: 100 }, () => 'x') });
    expect(p.errors).toHaveLength(20);
    expect(p.errors[19]).toEqual({ field: 'request', message: 'has 81 more problems' });
  });

  it('a near miss of a field name, letters swapped included, is suggested; short names only by their own letters', async () => {
    expect((await send('POST', '/api/v1/apikeys', { nmae: 'x' })).detail).toMatch(/unknown field nmae \(did you mean name\?\)/);
    expect((await send('GET', '/api/v1/security-events?in=x')).detail).toBe('unknown query parameter in (known query parameters: from, to, reason, ip, limit, cursor)');
    expect((await send('GET', '/api/v1/security-events?pi=x')).detail).toBe('unknown query parameter pi (did you mean ip?)');
  });

  it('an empty body', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: '' });
    expect(res.statusCode).toBe(400);
    expect(res.json().detail).toBe('the request body must be a JSON object (it is empty or null)');
  });
});

describe('query strings and paths', () => {
  it('compare with one version: "toVersion is required" (never NaN)', async () => {
    const p = await send('GET', `/api/v1/apikeys/${target.id}/change-history/compare?fromVersion=1`);
    expect(p.detail).toBe('toVersion is required');
    expect(JSON.stringify(p)).not.toMatch(/NaN/);
  });

  it('a version that is not a whole number names the range', async () => {
    const p = await send('GET', `/api/v1/apikeys/${target.id}/change-history/compare?fromVersion=abc&toVersion=1`);
    expect(p.detail).toBe('fromVersion must be a whole number from 1 to 2147483647');
    expect((await send('GET', `/api/v1/apikeys/${target.id}/change-history/1.5`)).detail).toBe('version must be a whole number from 1 to 2147483647');
  });

  it('a query parameter given twice', async () => {
    expect((await send('GET', '/api/v1/apikeys?limit=1&limit=2')).detail).toBe('limit must be given only once');
  });

  it('limit, isEnabled and unknown query parameters', async () => {
    expect((await send('GET', '/api/v1/apikeys?limit=0')).detail).toBe('limit must be a whole number from 1 to 1000');
    expect((await send('GET', '/api/v1/apikeys?isEnabled=yes')).detail).toBe('isEnabled must be true or false');
    expect((await send('GET', '/api/v1/apikeys?Name=ci*')).detail).toBe('unknown query parameter Name (did you mean name?)');
  });

  it('a malformed id says what an id looks like', async () => {
    expect((await send('GET', '/api/v1/apikeys/123')).detail).toBe('id must be a GUID (8-4-4-4-12 hex digits), e.g. 0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b');
  });

  it('a cursor that this server did not issue', async () => {
    expect((await send('GET', '/api/v1/apikeys?limit=1&cursor=abc')).detail).toBe('cursor is not one this server issued: follow the Link header of the previous page');
  });
});

describe('If-Match', () => {
  const RULE = 'If-Match must be * or one or more quoted ETags as the ETag header gives them, e.g. "3"';

  it.each([['2'], ['"2'], ['W/2'], ['"1" "2"']])('a malformed If-Match (%s) is a 400, not a 412', async (value) => {
    const p = await send('PATCH', `/api/v1/apikeys/${target.id}`, { name: 'renamed' }, { 'if-match': value });
    expect(p.detail).toBe(RULE);
    expect(p.errors).toEqual([{ field: 'If-Match', message: RULE.replace(/^If-Match /, '') }]);
  });

  it('an over-long If-Match gets one message, about its length', async () => {
    expect((await send('PATCH', `/api/v1/apikeys/${target.id}`, { name: 'renamed' }, { 'if-match': `"${'1'.repeat(200)}"` })).detail).toBe(
      'If-Match must have at most 200 characters',
    );
  });

  it('on DELETE too, and nothing is deleted', async () => {
    const p = await send('DELETE', `/api/v1/apikeys/${target.id}`, undefined, { 'if-match': '1' });
    expect(p.detail).toBe(RULE);
  });

  it('well-formed tags still decide: stale → 412, current → 200, weak never matches, * always does', async () => {
    const etag = (await app.inject({ method: 'GET', url: `/api/v1/apikeys/${target.id}`, headers: admin.headers })).headers.etag as string;
    const patch = (ifMatch: string) =>
      app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${target.id}`, headers: { ...admin.headers, ...json, 'if-match': ifMatch }, payload: { description: ifMatch } });
    expect((await patch('"999"')).statusCode).toBe(412);
    expect((await patch(`W/${etag}`)).statusCode).toBe(412);
    const ok = await patch(`"998", ${etag}`);
    expect(ok.statusCode).toBe(200);
    const next = ok.headers.etag as string;
    expect((await patch(`${next},`)).statusCode).toBe(200); // an empty list element is tolerated (RFC 9110 §5.6.1)
    expect((await patch('*')).statusCode).toBe(200);
  });
});

describe('configuration errors say what is valid', () => {
  const issues = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err.issues;
      throw err;
    }
    throw new Error('expected a ConfigError');
  };

  it.each([
    [{ PORT: 'eighty' }, 'PORT: must be a whole number from 0 to 65535 (got "eighty")'],
    [{ PORT: '70000' }, 'PORT: must be a whole number from 0 to 65535 (got "70000")'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent (got "loud")'],
    [{ DB_MIGRATE_ON_START: 'yes' }, 'DB_MIGRATE_ON_START: must be true or false (got "yes")'],
    [{ RATE_LIMIT_IP_MAX: '0' }, 'RATE_LIMIT_IP_MAX: must be a whole number from 1 to 10000000 (got "0")'],
    [{ TRUST_PROXY: 'yes' }, 'TRUST_PROXY: must be false or a comma-separated list of proxy IP addresses or CIDRs (got "yes")'],
  ])('%o', (env, message) => {
    expect(issues(env)).toEqual([message]);
  });

  it('never repeats a secret, or a value that could hold one', () => {
    expect(issues({ DATABASE_URL: 'mysql://u:pw-4711@h/x' })).toEqual(['DATABASE_URL: must be a postgres:// or postgresql:// URL with a host (value not shown)']);
    expect(issues({ PORT: 'jim_ak_0123456789abcdef0123456789abcdef' })).toEqual(['PORT: must be a whole number from 0 to 65535 (value not shown)']);
  });
});
