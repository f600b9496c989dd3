// Behind PgBouncer in transaction mode, as most production PostgreSQL runs: the whole lifecycle
// through the pooler, revocation across two instances through it, every session setting left
// where it was, and the start-up refusal when LISTEN would go through it.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { ListenUnavailableError } from '../src/db/key-events.js';
import { SCHEDULER_LOCK_KEY } from '../src/policies/scheduler.js';
import { buildTestApp, freshDatabase, testConfig } from './helpers/app.js';
import { ADMIN, json, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { findPgBouncer, startPgBouncer, type PgBouncer } from './helpers/pgbouncer.js';
import { freePort, killHard, startServer } from './helpers/server-process.js';
import { until } from './helpers/until.js';
import { buildApp } from '../src/app.js';

const found = findPgBouncer();
if ('missing' in found) process.stdout.write(`[pgbouncer.test] skipped: ${found.missing}\n`);

describe.skipIf('missing' in found)('behind PgBouncer (transaction pooling)', () => {
  let bouncer: PgBouncer;
  let direct: string;
  let pooled: string;
  const apps: App[] = [];

  beforeAll(async () => {
    direct = await freshDatabase();
    bouncer = await startPgBouncer((found as { path: string }).path, direct, { poolSize: 2 });
    pooled = bouncer.pooled(direct);
  });
  afterAll(async () => {
    await Promise.allSettled(apps.map((a) => a.close()));
    await bouncer?.stop();
  });

  const instance = async (env: Record<string, string> = {}) => {
    const app = await buildTestApp({ databaseUrl: pooled, env: { DATABASE_DIRECT_URL: direct, DB_POOL_MAX: '8', ...env } });
    apps.push(app);
    return app;
  };

  it('is the pooler production has: clients share server connections, and LISTEN through it hears nothing', async () => {
    const clients = await Promise.all([0, 1, 2, 3].map(async () => {
      const c = new pg.Client({ connectionString: pooled });
      await c.connect();
      return c;
    }));
    try {
      const pids = new Set<number>();
      for (let round = 0; round < 3; round++) {
        const rows = await Promise.all(clients.map((c) => c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')));
        for (const r of rows) pids.add(r.rows[0]!.pid);
      }
      expect(pids.size).toBeLessThanOrEqual(2); // four clients, two server connections
      const heard: string[] = [];
      clients[0]!.on('notification', (m) => heard.push(m.payload ?? ''));
      await clients[0]!.query('LISTEN keyward_pooler_demo');
      await clients[1]!.query(`SELECT pg_notify('keyward_pooler_demo', 'hello')`);
      await new Promise((r) => setTimeout(r, 300));
      expect(heard).toEqual([]);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it('refuses to start when only a pooled URL is given, naming DATABASE_DIRECT_URL; and when DATABASE_DIRECT_URL is pooled too', async () => {
    const err = await buildApp(testConfig({}, pooled)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ListenUnavailableError);
    expect((err as Error).message).toMatch(/a NOTIFY sent through DATABASE_URL did not reach a LISTEN on DATABASE_URL within 3000 ms/);
    expect((err as Error).message).toMatch(/Set DATABASE_DIRECT_URL to a direct connection/);
    expect((err as Error).message).not.toContain(direct.split('@')[0]!); // no URL, no password

    const both = await buildApp(testConfig({ DATABASE_DIRECT_URL: pooled }, pooled)).then(
      () => null,
      (e: unknown) => e,
    );
    expect((both as Error).message).toMatch(/a LISTEN on DATABASE_DIRECT_URL .*DATABASE_DIRECT_URL must be a direct connection \(not through a pooler\)/);
  });

  it('the server process exits 1 with that message, before it migrates or listens', async () => {
    const port = await freePort();
    const server = startServer({ NODE_ENV: 'test', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', LOG_LEVEL: 'info', DATABASE_URL: pooled, PORT: String(port) });
    try {
      const { code } = await server.exited;
      expect(code).toBe(1);
      expect(server.output()).toMatch(/keyward: failed to start: keyward cannot hear PostgreSQL notifications: .*Set DATABASE_DIRECT_URL/);
      expect(server.output()).not.toMatch(/listening for key changes|Server listening/);
    } finally {
      killHard(server);
    }
  });

  describe('with DATABASE_DIRECT_URL for LISTEN and migrations', () => {
    let a: App;
    let b: App;
    let admin: SeededKey;
    beforeAll(async () => {
      a = await instance();
      b = await instance();
      admin = await seedKey(a, { roleIds: [ADMIN] });
      await until(async () => a.services.listener.stats().peers === 1 && b.services.listener.stats().peers === 1, 5_000);
    });

    it('runs the whole lifecycle through the pooler, concurrently, with every version counted once', async () => {
      const h = { ...admin.headers, ...json };
      // Twelve keys at once: eight pool connections per instance multiplexed onto two server connections.
      const created = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          (i % 2 ? a : b).inject({ method: 'POST', url: '/api/v1/apikeys', headers: h, payload: { name: `pooled-${i}`, roleIds: [3], metadata: { n: i } } }),
        ),
      );
      for (const r of created) expect(r.statusCode, r.body).toBe(201);
      const keys = created.map((r) => r.json() as { id: string; key: string });
      // Each edited three times, concurrently across keys and instances.
      for (let round = 0; round < 3; round++) {
        const res = await Promise.all(
          keys.map((k, i) =>
            (i % 2 ? b : a).inject({ method: 'PATCH', url: `/api/v1/apikeys/${k.id}`, headers: h, payload: { description: `round ${round}` } }),
          ),
        );
        for (const r of res) expect(r.statusCode, r.body).toBe(200);
      }
      const rows = await sql<{ name: string; version: number; description: string; changes: number }>(
        direct,
        `SELECT name, version, description, (SELECT count(*)::int FROM api_key_changes c WHERE c.api_key_id = k.id) AS changes
           FROM api_keys k WHERE name LIKE 'pooled-%' ORDER BY name`,
      );
      expect(rows).toHaveLength(12);
      // create = 1, three edits: keyward's own marker was seen by the trigger in each transaction.
      for (const r of rows) expect(r).toMatchObject({ version: 4, description: 'round 2', changes: 4 });

      const first = keys[0]!;
      const get = await b.inject({ url: `/api/v1/apikeys/${first.id}`, headers: admin.headers });
      expect(get.json()).toMatchObject({ name: 'pooled-0', description: 'round 2', metadata: { n: 0 } });
      // JIM's PUT: fields it does not know (metadata) survive.
      const put = await a.inject({
        method: 'PUT',
        url: `/api/v1/apikeys/${first.id}`,
        headers: h,
        payload: { name: 'pooled-0', description: 'put', roleIds: [3], isEnabled: true, expiresAt: null },
      });
      expect(put.statusCode, put.body).toBe(200);
      expect(put.json()).toMatchObject({ description: 'put', metadata: { n: 0 } });
      const list = await b.inject({ url: '/api/v1/apikeys?name=pooled-*', headers: admin.headers });
      expect(list.statusCode).toBe(200);
      expect(JSON.stringify(list.json())).toContain('pooled-11');
      // The key authenticates, is disabled, refused, enabled, and deleted.
      expect((await b.inject({ url: '/api/v1/userinfo', headers: { 'x-api-key': first.key } })).statusCode).toBe(200);
      expect((await a.inject({ method: 'PATCH', url: `/api/v1/apikeys/${first.id}`, headers: h, payload: { isEnabled: false } })).statusCode).toBe(200);
      expect((await b.inject({ url: '/api/v1/userinfo', headers: { 'x-api-key': first.key } })).statusCode).toBe(401);
      expect((await b.inject({ method: 'PATCH', url: `/api/v1/apikeys/${first.id}`, headers: h, payload: { isEnabled: true } })).statusCode).toBe(200);
      expect((await a.inject({ url: '/api/v1/userinfo', headers: { 'x-api-key': first.key } })).statusCode).toBe(200);
      const history = await a.inject({ url: `/api/v1/apikeys/${first.id}/change-history`, headers: admin.headers });
      expect(history.statusCode).toBe(200);
      expect((history.json() as Array<{ version: number }>).map((e) => e.version)).toEqual([7, 6, 5, 4, 3, 2, 1]);
      // A role of the application's own, edited through the pooler.
      const role = await a.inject({ method: 'POST', url: '/api/v1/roles', headers: h, payload: { name: 'pooled-role', permissions: ['orders.read'] } });
      expect(role.statusCode, role.body).toBe(201);
      const verify = await b.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: h, payload: { key: keys[1]!.key } });
      expect(verify.json()).toMatchObject({ valid: true, keyId: keys[1]!.id });
      expect((await a.inject({ method: 'DELETE', url: `/api/v1/apikeys/${first.id}`, headers: admin.headers })).statusCode).toBe(204);
      expect((await b.inject({ url: '/api/v1/userinfo', headers: { 'x-api-key': first.key } })).statusCode).toBe(401);
    });

    it('the policy scheduler locks on the direct connection: a lock held there makes both instances skip, and no lock outlives a run', async () => {
      const holder = new pg.Client({ connectionString: direct });
      await holder.connect();
      await holder.query('SELECT pg_advisory_lock($1)', [SCHEDULER_LOCK_KEY]);
      try {
        expect((await a.services.scheduler.runOnce()).outcome).toBe('skipped');
        expect((await b.services.scheduler.runOnce()).outcome).toBe('skipped');
      } finally {
        await holder.end();
      }
      const runs = await Promise.all([a.services.scheduler.runOnce(), b.services.scheduler.runOnce()]);
      expect(runs.filter((r) => r.outcome === 'acted').length).toBeGreaterThanOrEqual(1);
      const c = new pg.Client({ connectionString: direct });
      await c.connect();
      try {
        const { rows } = await c.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1", [SCHEDULER_LOCK_KEY]);
        expect(rows[0].n).toBe(0);
      } finally {
        await c.end();
      }
    });

    it('leaves no session setting behind on the shared server connections', async () => {
      const c = new pg.Client({ connectionString: pooled });
      await c.connect();
      try {
        for (let i = 0; i < 6; i++) {
          const { rows } = await c.query(
            `SELECT coalesce(current_setting('keyward.versioned', true), '') AS marker, current_setting('statement_timeout') AS timeout, current_setting('lock_timeout') AS lock`,
          );
          expect(rows[0]).toEqual({ marker: '', timeout: '0', lock: '0' });
        }
      } finally {
        await c.end();
      }
    });

    it('a disable through one instance is refused by the other on the very next request (it confirmed before the reply)', async () => {
      for (let trial = 0; trial < 10; trial++) {
        const key = await seedKey(a, { roleIds: [3] });
        // Both instances have it cached.
        for (const app of [a, b, a, b]) expect((await app.inject({ url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
        const [writer, other] = trial % 2 ? [a, b] : [b, a];
        const off = await writer.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload: { isEnabled: false } });
        expect(off.statusCode).toBe(200);
        const next = await other.inject({ url: '/api/v1/userinfo', headers: key.headers });
        expect(next.statusCode, `trial ${trial}`).toBe(401);
        expect(next.json().code).toBe('API_KEY_DISABLED');
      }
      expect(a.services.listener.stats().timeouts + b.services.listener.stats().timeouts).toBe(0);
    });

    it("an instance that loses its listener holds nobody's writes for the lease: its first proof after reconnecting releases them", async () => {
      const key = await seedKey(a, { roleIds: [3] });
      for (const app of [a, b]) expect((await app.inject({ url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
      const timeouts = a.services.listener.stats().timeouts;
      await sql(direct, 'SELECT pg_terminate_backend($1)', [await b.services.listener.backendPid()]);
      const off = await a.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin.headers, ...json }, payload: { isEnabled: false } });
      expect(off.statusCode).toBe(200);
      // Released by B's "fresh" proof (or its confirmation), not by the lease running out.
      expect(a.services.listener.stats().timeouts).toBe(timeouts);
      const next = await b.inject({ url: '/api/v1/userinfo', headers: key.headers });
      expect(next.statusCode).toBe(401);
      await until(() => b.services.listener.listening, 5_000);
    });

    it('a pooler that stops answering is noticed by the heartbeat: cache hits are re-checked, then it recovers', async () => {
      const c = await instance({ DB_LISTEN_HEARTBEAT_MS: '300' });
      const key = await seedKey(c, { roleIds: [3] });
      expect((await c.inject({ url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
      expect(c.services.listener.listening).toBe(true);
      process.kill(bouncer.pid, 'SIGSTOP');
      try {
        await until(async () => !c.services.listener.listening, 5_000);
        expect(c.services.cache.stats().entries).toBe(0);
      } finally {
        process.kill(bouncer.pid, 'SIGCONT');
      }
      await until(async () => c.services.listener.listening, 15_000);
      expect((await c.inject({ url: '/api/v1/userinfo', headers: key.headers })).statusCode).toBe(200);
    });
  });
});
