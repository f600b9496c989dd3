// Concurrent writers on one key, and concurrent creators of one name: one consistent outcome,
// no 500, history with exactly one version per success.
import { describe, expect, it } from 'vitest';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, json, READER, seedKey, sql } from './helpers/keys.js';

async function setup() {
  const app = await buildTestApp();
  const dbUrl = (await testDatabase()).url;
  const admin = await seedKey(app, { roleIds: [ADMIN] });
  const headers = { ...admin.headers, ...json };
  return { app, dbUrl, headers };
}

const versionsOf = async (dbUrl: string, id: string) =>
  (await sql<{ version: number }>(dbUrl, 'SELECT version FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [id])).map((v) => v.version);

describe('concurrency', () => {
  it('50 concurrent PATCHes with different names: the final name is exactly one of them; one history version per success', async () => {
    const { app, dbUrl, headers } = await setup();
    const key = await seedKey(app, { name: 'patch-target', roleIds: [READER] });
    const names = Array.from({ length: 50 }, (_, i) => `patched-${i}`);
    const results = await Promise.all(
      names.map((name) => app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers, payload: { name } })),
    );
    const ok = results.filter((r) => r.statusCode === 200);
    for (const r of results) expect([200, 503]).toContain(r.statusCode); // 503 only if the pool ran dry
    expect(ok.length).toBeGreaterThan(0);
    const [row] = await sql<{ name: string; version: number }>(dbUrl, 'SELECT name, version FROM api_keys WHERE id = $1', [key.id]);
    expect(ok.map((r) => r.json().name)).toContain(row.name);
    // The last version's snapshot is the row; every success has its own version.
    expect(await versionsOf(dbUrl, key.id)).toEqual(Array.from({ length: ok.length + 1 }, (_, i) => i + 1));
    const [last] = await sql<{ snapshot: { name: string } }>(dbUrl, 'SELECT snapshot FROM api_key_changes WHERE api_key_id = $1 ORDER BY version DESC LIMIT 1', [key.id]);
    expect(last.snapshot.name).toBe(row.name);
    expect(new Set(ok.map((r) => r.headers.etag)).size).toBe(ok.length);
  });

  it('concurrent PUTs with the same If-Match: exactly one 200, the rest 412, one new version', async () => {
    const { app, dbUrl, headers } = await setup();
    const key = await seedKey(app, { name: 'put-target', roleIds: [READER] });
    const etag = (await app.inject({ method: 'GET', url: `/api/v1/apikeys/${key.id}`, headers })).headers.etag as string;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        app.inject({
          method: 'PUT',
          url: `/api/v1/apikeys/${key.id}`,
          headers: { ...headers, 'if-match': etag },
          payload: { name: `put-${i}`, roleIds: [READER], isEnabled: true },
        }),
      ),
    );
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes.filter((c) => c === 200)).toHaveLength(1);
    expect(codes.filter((c) => c === 412)).toHaveLength(19);
    for (const r of results.filter((x) => x.statusCode === 412)) expect(r.json().code).toBe('PRECONDITION_FAILED');
    const winner = results.find((r) => r.statusCode === 200)!.json();
    expect((await sql<{ name: string }>(dbUrl, 'SELECT name FROM api_keys WHERE id = $1', [key.id]))[0].name).toBe(winner.name);
    expect(await versionsOf(dbUrl, key.id)).toEqual([1, 2]);
  });

  it('concurrent creates with one name all succeed, with distinct ids, prefixes and secrets', async () => {
    const { app, dbUrl, headers } = await setup();
    const results = await Promise.all(
      Array.from({ length: 25 }, () => app.inject({ method: 'POST', url: '/api/v1/apikeys', headers, payload: { name: 'same-name', roleIds: [READER] } })),
    );
    expect(results.map((r) => r.statusCode)).toEqual(results.map(() => 201));
    const bodies = results.map((r) => r.json() as { id: string; keyPrefix: string; key: string });
    expect(new Set(bodies.map((b) => b.id)).size).toBe(25);
    expect(new Set(bodies.map((b) => b.keyPrefix)).size).toBe(25);
    expect(new Set(bodies.map((b) => b.key)).size).toBe(25);
    expect(await sql(dbUrl, "SELECT count(*)::int AS n FROM api_keys WHERE name = 'same-name'")).toEqual([{ n: 25 }]);
    // Each works.
    for (const b of bodies.slice(0, 5)) {
      expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': b.key } })).json().id).toBe(b.id);
    }
  });

  it('deletes racing updates and each other never resurrect a key or leave history out of step', async () => {
    const { app, dbUrl, headers } = await setup();
    for (let round = 0; round < 5; round++) {
      const key = await seedKey(app, { name: `race-${round}`, roleIds: [READER] });
      const url = `/api/v1/apikeys/${key.id}`;
      const results = await Promise.all([
        ...Array.from({ length: 8 }, (_, i) => app.inject({ method: 'PATCH', url, headers, payload: { name: `r${round}-${i}` } })),
        app.inject({ method: 'DELETE', url, headers }),
        app.inject({ method: 'DELETE', url, headers }),
        ...Array.from({ length: 8 }, (_, i) => app.inject({ method: 'PUT', url, headers, payload: { name: `p${round}-${i}`, roleIds: [READER], isEnabled: true } })),
      ]);
      for (const r of results) expect([200, 204, 404]).toContain(r.statusCode);
      expect(results.filter((r) => r.statusCode === 204)).toHaveLength(1);
      expect(await sql(dbUrl, 'SELECT id FROM api_keys WHERE id = $1', [key.id])).toEqual([]);
      const history = await sql<{ version: number; operation: string }>(dbUrl, 'SELECT version, operation FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [key.id]);
      const updates = results.filter((r) => r.statusCode === 200).length;
      expect(history.map((h) => h.version)).toEqual(Array.from({ length: updates + 2 }, (_, i) => i + 1));
      expect(history.at(-1)!.operation.toLowerCase()).toContain('delete');
      expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(401);
    }
  });
});
