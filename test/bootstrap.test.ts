// JIM_INFRASTRUCTURE_API_KEY: one Administrator key per secret, ever.
import { describe, expect, it } from 'vitest';
import { buildTestApp, captureLogs, freshDatabase } from './helpers/app.js';
import { sql } from './helpers/keys.js';

const INFRA = `jim_ak_${'c0ffee'.repeat(10)}ab`;

const infraRows = (url: string) =>
  sql<{ id: string; name: string; is_infrastructure_key: boolean; expires_at: Date; created_at: Date }>(
    url,
    'SELECT id, name, is_infrastructure_key, expires_at, created_at FROM api_keys WHERE is_infrastructure_key',
  );

describe('infrastructure key bootstrap', () => {
  it('creates an Administrator key from the secret, valid for 24 hours, created by "system"', async () => {
    const url = await freshDatabase();
    const logs = captureLogs();
    const app = await buildTestApp({ databaseUrl: url, env: { JIM_INFRASTRUCTURE_API_KEY: INFRA, LOG_LEVEL: 'info' }, logStream: logs.stream });
    const rows = await infraRows(url);
    expect(rows).toHaveLength(1);
    expect(rows[0].name).toBe('Infrastructure Key');
    expect(rows[0].expires_at.getTime() - rows[0].created_at.getTime()).toBe(24 * 60 * 60 * 1000);
    const me = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': INFRA } });
    expect(me.json()).toMatchObject({ id: rows[0].id, roles: [{ id: 1, name: 'Administrator' }] });
    const [change] = await sql(url, 'SELECT actor_type, actor_name, operation FROM api_key_changes WHERE api_key_id = $1', [rows[0].id]);
    expect(change).toEqual({ actor_type: 'system', actor_name: 'system', operation: 'create' });
    expect(logs.text()).toMatch(/infrastructure key created/);
    expect(logs.text()).not.toContain(INFRA);
    // The database holds argon2id hashes of it, never the secret.
    const dump = JSON.stringify(await sql(url, 'SELECT * FROM api_keys')) + JSON.stringify(await sql(url, 'SELECT * FROM infrastructure_bootstraps'));
    expect(dump).not.toContain(INFRA.slice(16));
  });

  it('a restart does not create it twice; after a delete, a restart does not re-create it', async () => {
    const url = await freshDatabase();
    const first = await buildTestApp({ databaseUrl: url, env: { JIM_INFRASTRUCTURE_API_KEY: INFRA } });
    await first.close();
    await (await buildTestApp({ databaseUrl: url, env: { JIM_INFRASTRUCTURE_API_KEY: INFRA } })).close();
    const rows = await infraRows(url);
    expect(rows).toHaveLength(1);

    const app = await buildTestApp({ databaseUrl: url, env: { JIM_INFRASTRUCTURE_API_KEY: INFRA } });
    const del = await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${rows[0].id}`, headers: { 'x-api-key': INFRA } });
    expect(del.statusCode).toBe(204);
    await app.close();

    const logs = captureLogs();
    const again = await buildTestApp({ databaseUrl: url, env: { JIM_INFRASTRUCTURE_API_KEY: INFRA, LOG_LEVEL: 'info' }, logStream: logs.stream });
    expect(await infraRows(url)).toHaveLength(0);
    expect(logs.text()).toMatch(/bootstrapped before and has since been deleted/);
    const me = await again.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': INFRA } });
    expect(me.statusCode).toBe(401);
  });

  it('the advisory lock serialises bootstraps that overlap (slow hashing makes them overlap)', async () => {
    const url = await freshDatabase();
    const app = await buildTestApp({ databaseUrl: url });
    const { bootstrapInfrastructureKey } = await import('../src/services/bootstrap.js');
    const { createKeyHasher } = await import('../src/auth/hasher.js');
    const real = createKeyHasher({ memoryKib: 1024, timeCost: 1, parallelism: 1 });
    const slow = { ...real, hash: async (s: string) => (await new Promise((r) => setTimeout(r, 200)), real.hash(s)) };
    const outcomes = await Promise.all(
      [1, 2, 3].map(() => bootstrapInfrastructureKey({ secret: INFRA, prisma: app.prisma, hasher: slow, keys: app.services.keys, log: app.log })),
    );
    expect(outcomes.sort()).toEqual(['created', 'exists', 'exists']);
    expect(await infraRows(url)).toHaveLength(1);
  });

  it('several instances starting together create exactly one', async () => {
    const url = await freshDatabase();
    await Promise.all([1, 2, 3].map(() => buildTestApp({ databaseUrl: url, env: { JIM_INFRASTRUCTURE_API_KEY: INFRA } })));
    expect(await infraRows(url)).toHaveLength(1);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM infrastructure_bootstraps')).toEqual([{ n: 1 }]);
  });

  it.each([['too short', 'jim_ak_short'], ['wrong prefix', `sk_live_${'a'.repeat(40)}`]])(
    'a malformed value (%s) is a warning without the value, and the server carries on',
    async (_label, value) => {
      const url = await freshDatabase();
      const logs = captureLogs();
      const app = await buildTestApp({ databaseUrl: url, env: { JIM_INFRASTRUCTURE_API_KEY: value, LOG_LEVEL: 'info' }, logStream: logs.stream });
      expect(await infraRows(url)).toHaveLength(0);
      const warning = logs.records().find((r) => /JIM_INFRASTRUCTURE_API_KEY is set but malformed/.test(r.msg));
      expect(warning?.level).toBe(40);
      expect(logs.text()).not.toContain(value);
      expect((await app.inject({ method: 'GET', url: '/api/v1/health' })).statusCode).toBe(200);
    },
  );
});
