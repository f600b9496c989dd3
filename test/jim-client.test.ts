// JIM's PowerShell cmdlets against a real keyward socket, sending what PowerShell really sends
// (test/helpers/powershell.ts): every header, ConvertTo-Json bodies with CRLF and arbitrary key
// order, unrolled roleIds, dates re-serialised in the client's offset, escaped change reasons.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, OPERATOR, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { convertToJson, escapeDataString, JimApiError, JimModule, PsConnection, PsDate, roundTripFormat, unrolled, type DateStyle } from './helpers/powershell.js';

let app: App;
let dbUrl: string;
let admin: SeededKey;
let port: number;
const connections: PsConnection[] = [];

beforeAll(async () => {
  app = await buildTestApp();
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as AddressInfo).port;
  dbUrl = (await testDatabase()).url;
  admin = await seedKey(app, { name: 'jim-admin', roleIds: [ADMIN] });
});
afterAll(() => connections.forEach((c) => c.close()));

/** A PowerShell session: Windows (CRLF) unless told otherwise, dates in India's offset by default. */
function session(opts: { newline?: '\r\n' | '\n'; dates?: DateStyle; key?: string } = {}) {
  const http = new PsConnection(port, opts.key ?? admin.secret, opts.newline ?? '\r\n');
  connections.push(http);
  return { jim: new JimModule(http, opts.dates), http };
}

const DAY = 24 * 60 * 60 * 1000;
const roleIdsOf = (k: { roles: Array<{ id: number }> }) => k.roles.map((r) => r.id);
const sentBodies = (http: PsConnection, method: string) => http.sent.filter((r) => r.method === method).map((r) => r.body);

describe('how PowerShell writes what it sends (the emulation itself)', () => {
  it('unrolls statement output and formats dates and bodies as PowerShell 7 does', () => {
    expect(unrolled([])).toBeNull();
    expect(unrolled([3])).toBe(3);
    expect(unrolled([1, 3])).toEqual([1, 3]);
    const ms = Date.parse('2027-02-24T10:00:00.120Z');
    expect(new PsDate(ms, { kind: 'local', offsetMinutes: 330 }).toJSON()).toBe('2027-02-24T15:30:00.12+05:30');
    expect(new PsDate(Date.parse('2027-02-24T10:00:00.000Z'), { kind: 'local', offsetMinutes: -480 }).toJSON()).toBe('2027-02-24T02:00:00-08:00');
    expect(new PsDate(ms, { kind: 'utc' }).toJSON()).toBe('2027-02-24T10:00:00.12Z');
    expect(roundTripFormat(ms)).toBe('2027-02-24T10:00:00.1200000Z');
    const text = convertToJson({ name: 'x', roleIds: [1, 3], description: null, empty: [] }, '\r\n');
    expect(text).toMatch(/^\{\r\n {2}"/);
    expect(text).toContain('"roleIds": [\r\n    1,\r\n    3\r\n  ]');
    expect(text).toContain('"empty": []');
    expect(JSON.parse(text)).toEqual({ name: 'x', roleIds: [1, 3], description: null, empty: [] });
    expect(escapeDataString("it's (done) *now* ✓")).toBe('it%27s%20%28done%29%20%2Anow%2A%20%E2%9C%93');
  });
});

describe('Connect-JIM', () => {
  it('reads status from /health and version from /health/version, with its key and content type on both', async () => {
    const { jim, http } = session();
    expect(await jim.connect()).toEqual({ status: 'healthy', serverVersion: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    expect(http.sent.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/v1/health', 'GET /api/v1/health/version']);
    expect(http.sent[0].head).toMatch(/\r\nContent-Type: application\/json\r\n/);
  });

  it('does not check the key on connect (a wrong one still connects, as with JIM)', async () => {
    const { jim } = session({ key: 'jim_ak_0000000000000000000000000000000000000000' });
    expect((await jim.connect()).status).toBe('healthy');
  });
});

describe('New-JIMApiKey', () => {
  it('POST with roleIds always an array, the description, an "o"-format expiry and a reason', async () => {
    const { jim, http } = session();
    const expires = Date.now() + 30 * DAY;
    const created = await jim.new({ name: 'CI Pipeline', description: 'Deploys from CI', roleIds: [OPERATOR, READER], expiresAt: expires, changeReason: 'CHG-1' });
    expect(http.sent.at(-1)!.body).toMatch(/"expiresAt": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"/);
    expect(created).toMatchObject({ name: 'CI Pipeline', description: 'Deploys from CI', isEnabled: true, expiresAt: new Date(expires).toISOString() });
    expect(roleIdsOf(created)).toEqual([OPERATOR, READER]);
    expect(created.key).toMatch(/^jim_ak_[0-9a-f]{64}$/);
  });

  it('with only -Name: "roleIds": [] and no other field; one role stays an array (a variable, not a statement)', async () => {
    const { jim, http } = session({ newline: '\n' });
    const bare = await jim.new({ name: 'Bare' });
    expect(JSON.parse(http.sent.at(-1)!.body)).toEqual({ name: 'Bare', roleIds: [] });
    expect(bare.roles).toEqual([]);
    const one = await jim.new({ name: 'One', roleIds: [READER] });
    expect(http.sent.at(-1)!.body).toContain('"roleIds": [\n    3\n  ]');
    expect(roleIdsOf(one)).toEqual([READER]);
  });

  it('a non-ASCII name in a UTF-8 body comes back as written', async () => {
    const { jim } = session();
    expect((await jim.new({ name: 'Zürich ✓ 東京' })).name).toBe('Zürich ✓ 東京');
  });
});

describe('Get-JIMApiKey', () => {
  it('-Id gets one; -Name filters the bare list on the client', async () => {
    const { jim } = session();
    const a = await jim.new({ name: 'get-alpha' });
    await jim.new({ name: 'get-beta' });
    expect((await jim.get(a.id)).name).toBe('get-alpha');
    expect((await jim.list('GET-A*')).map((k) => k.id)).toEqual([a.id]);
  });
});

describe('Set-JIMApiKey: GET → merge → PUT', () => {
  const styles: Array<[string, DateStyle]> = [
    ['+05:30', { kind: 'local', offsetMinutes: 330 }],
    ['-08:00', { kind: 'local', offsetMinutes: -480 }],
    ['UTC as +00:00', { kind: 'local', offsetMinutes: 0 }],
    ['Z', { kind: 'utc' }],
  ];

  it.each([
    [0, [] as number[], 'null'],
    [1, [READER], '3'],
    [3, [ADMIN, OPERATOR, READER], '[\r\n    1,\r\n    2,\r\n    3\r\n  ]'],
  ])('-Name on a key with %i role(s): roleIds goes out as %j → %s, and every other field survives', async (_n, roles, wire) => {
    for (const [label, dates] of styles) {
      const { jim, http } = session({ dates });
      const expires = Date.parse('2027-02-24T10:00:00.123Z') + roles.length * 1000;
      const created = await jim.new({ name: `set-${roles.length}-${label}`, description: 'keep me', roleIds: roles, expiresAt: expires });
      const updated = await jim.set(created.id, { name: 'CI Pipeline v2' });
      const put = sentBodies(http, 'PUT').at(-1)!;
      expect(put, label).toContain(`"roleIds": ${wire}`);
      expect(put, label).toContain(`"expiresAt": "${new PsDate(expires, dates).toJSON()}"`);
      expect(updated, label).toMatchObject({ name: 'CI Pipeline v2', description: 'keep me', isEnabled: true, expiresAt: new Date(expires).toISOString() });
      expect(roleIdsOf(updated), label).toEqual(roles);
    }
  });

  it('-RoleIds @(3) sends "roleIds": 3, -RoleIds @() sends null (no roles), -RoleIds @(1,3) an array', async () => {
    const { jim, http } = session();
    const k = await jim.new({ name: 'set-roles', roleIds: [OPERATOR] });
    expect(roleIdsOf(await jim.set(k.id, { roleIds: [READER] }))).toEqual([READER]);
    expect(JSON.parse(sentBodies(http, 'PUT').at(-1)!).roleIds).toBe(READER);
    expect(roleIdsOf(await jim.set(k.id, { roleIds: [] }))).toEqual([]);
    expect(JSON.parse(sentBodies(http, 'PUT').at(-1)!).roleIds).toBeNull();
    expect(roleIdsOf(await jim.set(k.id, { roleIds: [ADMIN, READER] }))).toEqual([ADMIN, READER]);
  });

  it('-ExpiresAt (a date) sends the "o" format; -ExpiresAt $null removes the expiry; -Enable/-Disable', async () => {
    const { jim } = session();
    const k = await jim.new({ name: 'set-expiry' });
    const at = Date.now() + 90 * DAY;
    expect((await jim.set(k.id, { expiresAt: at })).expiresAt).toBe(new Date(at).toISOString());
    expect((await jim.set(k.id, { expiresAt: null })).expiresAt).toBeNull();
    expect((await jim.set(k.id, { disable: true })).isEnabled).toBe(false);
    expect((await jim.set(k.id, { enable: true, description: '' })).isEnabled).toBe(true);
  });

  it('a GET → PUT round trip with nothing given changes nothing but the version', async () => {
    const { jim } = session({ dates: { kind: 'local', offsetMinutes: 345 } }); // Nepal: +05:45
    const k = await jim.new({ name: 'round-trip', description: 'd', roleIds: [READER], expiresAt: Date.now() + DAY });
    const { key: _secret, updatedAt: _u1, ...before } = k;
    const { updatedAt: _u2, ...after } = await jim.set(k.id);
    expect(after).toEqual(before);
  });

  it('Get-JIMApiKey | Where-Object { $_.expiresAt -lt (Get-Date) } | Set-JIMApiKey -Disable: the past expiry is re-sent and accepted', async () => {
    const { jim, http } = session({ dates: { kind: 'local', offsetMinutes: -300 } });
    const lapsed = [await jim.new({ name: 'lapsed-a', roleIds: [READER] }), await jim.new({ name: 'lapsed-b' })];
    const current = await jim.new({ name: 'lapsed-not', expiresAt: Date.now() + DAY });
    const past = Date.now() - 3 * DAY;
    for (const k of lapsed) await sql(dbUrl, 'UPDATE api_keys SET expires_at = $2 WHERE id = $1', [k.id, new Date(past)]);

    const now = Date.now();
    const expired = (await jim.list()).filter((k) => k.expiresAt !== null && k.expiresAt.ms < now);
    expect(expired.map((k) => k.name).sort()).toEqual(['lapsed-a', 'lapsed-b']);
    for (const k of expired) await jim.set(k.id, { disable: true });

    for (const k of lapsed) {
      const after = await jim.get(k.id);
      expect(after.isEnabled).toBe(false);
      expect(after.expiresAt!.ms).toBe(past);
    }
    expect(sentBodies(http, 'PUT').every((b) => b.includes(`"expiresAt": "${new PsDate(past, { kind: 'local', offsetMinutes: -300 }).toJSON()}"`))).toBe(true);
    expect((await jim.get(current.id)).isEnabled).toBe(true);
  });

  it('Get-JIMApiKey | Where-Object { $_.name -like "Test*" } | Set-JIMApiKey -Disable, over keys with 0, 1 and 2 roles', async () => {
    const { jim } = session();
    const made = [await jim.new({ name: 'Test-0' }), await jim.new({ name: 'Test-1', roleIds: [READER] }), await jim.new({ name: 'Test-2', roleIds: [OPERATOR, READER] })];
    for (const k of await jim.list('Test*')) await jim.set(k.id, { disable: true });
    for (const k of made) {
      const after = await jim.get(k.id);
      expect(after.isEnabled).toBe(false);
      expect(roleIdsOf(after)).toEqual(roleIdsOf(k));
    }
  });

  it('fields keyward adds beyond JIM survive a PUT that does not carry them', async () => {
    const infra = `jim_ak_${'5e7'.repeat(12)}`;
    const withInfra = await buildTestApp({ env: { JIM_INFRASTRUCTURE_API_KEY: infra } });
    const [row] = await sql<{ id: string }>((await testDatabase()).url, 'SELECT id FROM api_keys WHERE is_infrastructure_key');
    await withInfra.close();
    const { jim, http } = session();
    const updated = await jim.set(row.id, { description: 'renamed by Set-JIMApiKey' });
    expect(Object.keys(JSON.parse(sentBodies(http, 'PUT').at(-1)!)).sort()).toEqual(['description', 'expiresAt', 'isEnabled', 'name', 'roleIds']);
    expect(updated).toMatchObject({ isInfrastructureKey: true, description: 'renamed by Set-JIMApiKey' });
  });

  it('errors read as the module shows them: message, then a line per field', async () => {
    const { jim } = session();
    const k = await jim.new({ name: 'set-errors' });
    const err = await jim.set(k.id, { roleIds: [99] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JimApiError);
    expect((err as Error).message).toBe(
      'JIM API error (400): One or more role IDs are invalid: 99.\n  - roleIds: names a role that does not exist: 99 (GET /api/v1/roles lists them)',
    );
  });
});

describe('Remove-JIMApiKey', () => {
  it.each([
    ['Content-Length: 0', false],
    ['no Content-Length at all', true],
  ])('GET, then a body-less DELETE (content type, %s) with the reason escaped: 204 with no body', async (_label, lengthless) => {
    const { jim, http } = session();
    const k = await jim.new({ name: `remove-${lengthless}` });
    const reason = "Decommissioned: server 'web-01' (and friends) * 100% ✓";
    const { existing, response } = await jim.remove(k.id, { changeReason: reason, lengthless });
    expect(existing.name).toBe(`remove-${lengthless}`); // what -PassThru emits
    expect(response.status).toBe(204);
    expect(response.text).toBe('');
    expect(response.headers['content-length'] ?? '0').toBe('0');
    expect(http.sent.slice(-2).map((r) => r.method)).toEqual(['GET', 'DELETE']);
    expect(http.sent.at(-1)!.path).toBe(`/api/v1/apikeys/${k.id}?changeReason=${escapeDataString(reason)}`);
    const [row] = await sql(dbUrl, "SELECT change_reason FROM api_key_changes WHERE api_key_id = $1 AND operation = 'delete'", [k.id]);
    expect(row.change_reason).toBe(reason);
    // The same connection carries on (nothing left unread on it).
    expect((await jim.connect()).status).toBe('healthy');
  });

  it('a key that is already gone: the GET fails and the cmdlet says "API Key not found"', async () => {
    const { jim, http } = session();
    const id = '11111111-1111-4111-8111-111111111111';
    await expect(jim.remove(id)).rejects.toThrow(`API Key not found: ${id}`);
    expect(http.sent.map((r) => r.method)).toEqual(['GET']);
    const res = await http.invoke('GET', `/api/v1/apikeys/${id}`);
    expect(new JimApiError(res).message).toBe('Resource not found: API key not found.');
  });
});
