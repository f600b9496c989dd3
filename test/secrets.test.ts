// The full key appears in exactly one response (its creation): never in another response, a
// log line, the OpenAPI document or the database.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, captureLogs, testDatabase } from './helpers/app.js';
import { ADMIN, json, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let admin: SeededKey;
let logs: ReturnType<typeof captureLogs>;

beforeAll(async () => {
  logs = captureLogs();
  app = await buildTestApp({ logStream: logs.stream, env: { LOG_LEVEL: 'trace' } });
  admin = await seedKey(app, { name: 'secrets-admin', roleIds: [ADMIN] });
});

describe('the full key', () => {
  it('is in the creation response only, and nowhere else', async () => {
    const responses: Array<{ what: string; text: string }> = [];
    const record = (what: string, res: { body: string; headers: Record<string, unknown> }) =>
      responses.push({ what, text: res.body + JSON.stringify(res.headers) });

    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/apikeys',
      headers: { ...admin.headers, ...json },
      payload: { name: 'secret-holder', roleIds: [READER] },
    });
    const { id, key } = created.json();
    expect(created.body).toContain(key);
    const secretPart = key.slice(16);
    const own = { 'x-api-key': key };

    record('get', await app.inject({ method: 'GET', url: `/api/v1/apikeys/${id}`, headers: admin.headers }));
    record('list', await app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: admin.headers }));
    record('userinfo', await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: own }));
    record('own list', await app.inject({ method: 'GET', url: '/api/v1/apikeys?limit=1', headers: own }));
    record('forbidden', await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...own, ...json }, payload: { name: 'x' } }));
    record('wrong secret', await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': `${key.slice(0, -1)}0` } }));
    record('validation', await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: { ...admin.headers, ...json }, payload: { name: key, key } }));
    record('patch', await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${id}`, headers: { ...admin.headers, ...json }, payload: { description: 'x' } }));
    record('put', await app.inject({ method: 'PUT', url: `/api/v1/apikeys/${id}`, headers: { ...admin.headers, ...json }, payload: { name: 'n', roleIds: [READER], isEnabled: false } }));
    record('disabled', await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: own }));
    record('delete', await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${id}`, headers: { ...admin.headers, prefer: 'return=representation' } }));
    record('deleted', await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { authorization: `Bearer ${key}` } }));
    record('openapi', await app.inject({ method: 'GET', url: '/openapi.json' }));

    for (const r of responses) expect(r.text, r.what).not.toContain(secretPart);

    await app.services.lastUsed.flush();
    const logText = logs.text();
    expect(logText.length).toBeGreaterThan(1000);
    expect(logText).not.toContain(secretPart);
    expect(logText).not.toContain(admin.secret.slice(16));

    const { url } = await testDatabase();
    const tables = await sql<{ table_name: string }>(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'");
    for (const { table_name } of tables) {
      const dump = JSON.stringify(await sql(url, `SELECT * FROM "${table_name}"`));
      expect(dump, table_name).not.toContain(secretPart);
      expect(dump, table_name).not.toContain(admin.secret.slice(16));
    }
    const hashes = await sql<{ hash: string }>(url, 'SELECT hash FROM api_keys');
    for (const { hash } of hashes) expect(hash).toMatch(/^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/);
  });

  it('the OpenAPI document carries no example key', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).body;
    expect(doc).not.toMatch(/jim_ak_[0-9a-f]{16,}/);
  });
});
