// Every validation rule: a 400 problem naming the field, and nothing changed in the database.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, apiVisibleState, json, READER, seedKey, type SeededKey } from './helpers/keys.js';

let app: App;
let dbUrl: string;
let admin: SeededKey;
let target: SeededKey;

beforeAll(async () => {
  app = await buildTestApp();
  dbUrl = (await testDatabase()).url;
  admin = await seedKey(app, { name: 'validation-admin', roleIds: [ADMIN] });
  target = await seedKey(app, { name: 'target', roleIds: [READER] });
});

const long = (n: number, ch = 'x') => ch.repeat(n);
const valid = { name: 'ok' };

// [label, body, field named in the error]
const createCases: Array<[string, unknown, string]> = [
  ['missing name', { roleIds: [] }, 'name'],
  ['blank name', { name: '   ' }, 'name'],
  ['empty name', { name: '' }, 'name'],
  ['name of 201 code points', { name: long(201) }, 'name'],
  ['name of 201 emoji (code points, not UTF-16 units)', { name: long(201, '😀') }, 'name'],
  ['name with NUL', { name: 'a\u0000b' }, 'name'],
  ['name with a tab', { name: 'a\tb' }, 'name'],
  ['name with a newline', { name: 'a\nb' }, 'name'],
  ['name with DEL', { name: 'a\u007fb' }, 'name'],
  ['name with a lone high surrogate', { name: 'a\ud800b' }, 'name'],
  ['name with a lone low surrogate', { name: '\udc00' }, 'name'],
  ['null name', { name: null }, 'name'],
  ['numeric name', { name: 42 }, 'name'],
  ['description of 1001 code points', { ...valid, description: long(1001) }, 'description'],
  ['description with a bell', { ...valid, description: 'ding\u0007' }, 'description'],
  ['description with a lone surrogate', { ...valid, description: '\ud83d' }, 'description'],
  ['roleIds with an unknown id', { ...valid, roleIds: [3, 99, 77] }, 'roleIds'],
  ['roleIds repeated', { ...valid, roleIds: [3, 3] }, 'roleIds'],
  ['roleIds zero', { ...valid, roleIds: [0] }, 'roleIds[0]'],
  ['roleIds negative', { ...valid, roleIds: [-1] }, 'roleIds[0]'],
  ['roleIds fractional', { ...valid, roleIds: [1.5] }, 'roleIds[0]'],
  ['roleIds as strings', { ...valid, roleIds: ['1'] }, 'roleIds[0]'],
  ['roleIds null', { ...valid, roleIds: null }, 'roleIds'],
  ['roleIds huge', { ...valid, roleIds: [2 ** 40] }, 'roleIds[0]'],
  ['expiresAt in the past', { ...valid, expiresAt: '2001-01-01T00:00:00Z' }, 'expiresAt'],
  ['expiresAt without offset', { ...valid, expiresAt: '2099-01-01T00:00:00' }, 'expiresAt'],
  ['expiresAt date only', { ...valid, expiresAt: '2099-01-01' }, 'expiresAt'],
  ['expiresAt impossible date', { ...valid, expiresAt: '2099-02-30T00:00:00Z' }, 'expiresAt'],
  ['expiresAt as a number', { ...valid, expiresAt: 4102444800 }, 'expiresAt'],
  ['expiresAt beyond year 9999', { ...valid, expiresAt: '9999-12-31T23:59:59-14:00' }, 'expiresAt'],
  ['changeReason of 1001', { ...valid, changeReason: long(1001) }, 'changeReason'],
  ['isEnabled as a string', { ...valid, isEnabled: 'true' }, 'isEnabled'],
  ['isEnabled null', { ...valid, isEnabled: null }, 'isEnabled'],
  ['unknown field', { ...valid, colour: 'red' }, 'colour'],
  ['writes key', { ...valid, key: 'jim_ak_0000000000000000000000000000000000' }, 'key'],
  ['writes keyPrefix', { ...valid, keyPrefix: 'jim_ak_00000000' }, 'keyPrefix'],
  ['writes id', { ...valid, id: '7b0a3f3e-51a6-4f5e-9a55-3c2e2c5f0c11' }, 'id'],
  ['writes hash', { ...valid, hash: '$argon2id$' }, 'hash'],
  ['roleIds a bare number (PowerShell unrolling happens on Set, not New)', { ...valid, roleIds: 3 }, 'roleIds'],
  ['array body', [valid], 'body'],
  ['string body', 'name', 'body'],
  ['null body', null, 'body'],
];

describe('POST validation', () => {
  it.each(createCases)('%s → 400, nothing created', async (_label, body, field) => {
    const before = await apiVisibleState(dbUrl);
    const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: JSON.stringify(body) });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    const problem = res.json();
    expect(problem.code).toBe('VALIDATION_FAILED');
    expect(problem.errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(Object.keys(problem.validationErrors)).toContain(field);
    expect(await apiVisibleState(dbUrl)).toEqual(before);
  });

  it('names every unknown role id, as JIM words it', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: 'x', roleIds: [99, 77] } });
    expect(res.json().detail).toBe('One or more role IDs are invalid: 99, 77.');
  });

  it('accepts the boundaries: 200-code-point name, 1000-code-point description, tabs and newlines in a description', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/apikeys',
      headers: { ...admin.headers, ...json },
      payload: { name: long(200, '😀'), description: `${long(997)}\t\r\n`, changeReason: long(1000) },
    });
    expect(res.statusCode).toBe(201);
    expect([...res.json().name]).toHaveLength(200);
  });
});

describe('PUT and PATCH validation', () => {
  const putCases: Array<[string, unknown, string]> = [
    ['missing roleIds', { name: 'x', isEnabled: true }, 'roleIds'],
    ['missing isEnabled', { name: 'x', roleIds: [] }, 'isEnabled'],
    ['missing name', { roleIds: [], isEnabled: true }, 'name'],
    ['unknown role', { name: 'x', roleIds: [42], isEnabled: true }, 'roleIds'],
    ['null name', { name: null, roleIds: [], isEnabled: true }, 'name'],
    ['unknown field', { name: 'x', roleIds: [], isEnabled: true, lastUsedAt: null }, 'lastUsedAt'],
    ['roleIds a string', { name: 'x', roleIds: '3', isEnabled: true }, 'roleIds'],
    ['roleIds a fraction', { name: 'x', roleIds: 1.5, isEnabled: true }, 'roleIds'],
    ['roleIds an array with a bad element', { name: 'x', roleIds: [3, 0], isEnabled: true }, 'roleIds[1]'],
  ];
  it.each(putCases)('PUT %s → 400, nothing changed', async (_label, body, field) => {
    const before = await apiVisibleState(dbUrl);
    const res = await app.inject({ method: 'PUT', url: `/api/v1/apikeys/${target.id}`, headers: { ...admin.headers, ...json }, payload: body as object });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await apiVisibleState(dbUrl)).toEqual(before);
  });

  const patchCases: Array<[string, unknown, string]> = [
    ['null name', { name: null }, 'name'],
    ['roleIds an object', { roleIds: { id: 3 } }, 'roleIds'],
    ['null isEnabled', { isEnabled: null }, 'isEnabled'],
    ['blank name', { name: ' ' }, 'name'],
    ['unknown role', { roleIds: [1, 5000] }, 'roleIds'],
    ['bad expiresAt', { expiresAt: 'tomorrow' }, 'expiresAt'],
    ['expiresAt in year 0', { expiresAt: '0000-01-01T00:00:00Z' }, 'expiresAt'],
    ['expiresAt before 1970', { expiresAt: '1969-12-31T23:59:59Z' }, 'expiresAt'],
    ['unknown field', { enabled: false }, 'enabled'],
  ];
  it.each(patchCases)('PATCH %s → 400, nothing changed', async (_label, body, field) => {
    const before = await apiVisibleState(dbUrl);
    const res = await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${target.id}`, headers: { ...admin.headers, ...json }, payload: body as object });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await apiVisibleState(dbUrl)).toEqual(before);
  });

  it('a non-uuid id is a 400 on every key route', async () => {
    for (const method of ['GET', 'PUT', 'PATCH', 'DELETE'] as const) {
      const res = await app.inject({ method, url: '/api/v1/apikeys/123', headers: { ...admin.headers, ...json }, payload: method === 'GET' || method === 'DELETE' ? undefined : {} });
      expect(res.statusCode, method).toBe(400);
      expect(res.json().errors[0].field).toBe('id');
    }
  });

  it('DELETE with an over-long changeReason is a 400 and deletes nothing', async () => {
    const before = await apiVisibleState(dbUrl);
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${target.id}?changeReason=${long(1001)}`, headers: admin.headers });
    expect(res.statusCode).toBe(400);
    expect(await apiVisibleState(dbUrl)).toEqual(before);
  });
});
