// The real server process under a burst of writes: killed with SIGKILL (nothing acknowledged is
// lost, nothing half-written is left, history matches the keys), or stopped with SIGTERM
// (in-flight requests finish, new connections are refused, buffered writes are flushed, exit 0).
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { generateKey } from '../src/auth/key-format.js';
import { createDatabase } from './helpers/databases.js';
import { sql } from './helpers/keys.js';
import { freePort, killHard, portAnswers, serverPid, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';

const running: RunningServer[] = [];
const drops: Array<() => Promise<void>> = [];
afterAll(async () => {
  running.forEach(killHard);
  for (const d of drops) await d().catch(() => {});
});

const CHEAP = { NODE_ENV: 'test', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', RATE_LIMIT_ENABLED: 'false', LOG_LEVEL: 'info' };

async function database() {
  const db = await createDatabase(inject('pgAdminUrl'), { template: inject('pgTemplate'), prefix: `${inject('pgTemplate')}_proc` });
  drops.push(db.drop);
  return db;
}

async function launch(env: Record<string, string>) {
  const port = await freePort();
  const server = startServer({ ...CHEAP, PORT: String(port), ...env });
  running.push(server);
  await waitForHealthy(port, server);
  return { server, port, base: `http://127.0.0.1:${port}/api/v1` };
}

describe('kill -9 during a burst of creates and updates', () => {
  it('after a restart every acknowledged write is there and exact; nothing half-written; history matches', async () => {
    const db = await database();
    const infra = generateKey();
    const env = { DATABASE_URL: db.url, JIM_INFRASTRUCTURE_API_KEY: infra };
    const first = await launch(env);
    const headers = { 'x-api-key': infra, 'content-type': 'application/json' };

    // Keys to update during the burst.
    const existing: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${first.base}/apikeys`, { method: 'POST', headers, body: JSON.stringify({ name: `pre-${i}`, roleIds: [3] }) });
      existing.push(((await r.json()) as { id: string }).id);
    }

    type Outcome = { kind: 'create' | 'update'; marker: string; id?: string; status: number | 'failed'; key?: string };
    const outcomes: Outcome[] = [];
    let n = 0;
    let dead = false;
    /** One writer: creates and updates in turn until the server is gone. */
    const writer = async () => {
      while (!dead) {
        const i = n++;
        const marker = randomUUID();
        if (i % 2 === 0) {
          try {
            const r = await fetch(`${first.base}/apikeys`, { method: 'POST', headers, body: JSON.stringify({ name: `burst-${marker}`, description: marker, roleIds: [3] }) });
            const body = (await r.json().catch(() => ({}))) as { id?: string; key?: string };
            outcomes.push({ kind: 'create', marker, status: r.status, id: body.id, key: body.key });
          } catch {
            outcomes.push({ kind: 'create', marker, status: 'failed' });
          }
        } else {
          const id = existing[(i >> 1) % existing.length];
          try {
            const r = await fetch(`${first.base}/apikeys/${id}`, { method: 'PATCH', headers, body: JSON.stringify({ description: marker }) });
            await r.arrayBuffer();
            outcomes.push({ kind: 'update', marker, id, status: r.status });
          } catch {
            outcomes.push({ kind: 'update', marker, id, status: 'failed' });
          }
        }
      }
    };
    const burst = Array.from({ length: 12 }, writer);
    // Mid-burst: once some writes were acknowledged, while others are in flight.
    for (let waited = 0; outcomes.filter((o) => o.status !== 'failed').length < 60; waited += 5) {
      expect(waited, 'no write was acknowledged').toBeLessThan(30_000);
      await new Promise((r) => setTimeout(r, 5));
    }
    process.kill(serverPid(first.server)!, 'SIGKILL');
    dead = true;
    await Promise.all(burst);
    await first.server.exited;
    const acked = outcomes.filter((o) => o.status !== 'failed' && o.status < 300);
    const failed = outcomes.filter((o) => o.status === 'failed');
    expect(acked.length).toBeGreaterThan(0);
    expect(failed.length).toBeGreaterThan(0);
    console.log(`[crash] ${outcomes.length} writes: ${acked.length} acknowledged, ${failed.length} cut by the kill`);
    for (const o of outcomes) if (o.status !== 'failed') expect([200, 201, 503]).toContain(o.status);

    const second = await launch(env);
    // Every acknowledged create is there, exact, and its secret works.
    for (const o of acked.filter((x) => x.kind === 'create')) {
      const [row] = await sql<{ name: string; description: string }>(db.url, 'SELECT name, description FROM api_keys WHERE id = $1', [o.id]);
      expect(row, o.marker).toEqual({ name: `burst-${o.marker}`, description: o.marker });
      const me = await fetch(`${second.base}/userinfo`, { headers: { 'x-api-key': o.key! } });
      expect(me.status).toBe(200);
    }
    // Each updated key holds the description of one of its own updates, and every acknowledged
    // update is in its history (none lost, even if a later one overwrote it).
    for (const id of existing) {
      const [row] = await sql<{ description: string | null }>(db.url, 'SELECT description FROM api_keys WHERE id = $1', [id]);
      const mine = outcomes.filter((o) => o.kind === 'update' && o.id === id);
      const recorded = new Set(
        (await sql<{ d: string | null }>(db.url, "SELECT snapshot->>'description' AS d FROM api_key_changes WHERE api_key_id = $1", [id])).map((h) => h.d),
      );
      for (const o of mine.filter((x) => x.status !== 'failed' && x.status < 300)) expect(recorded.has(o.marker), o.marker).toBe(true);
      if (mine.some((o) => o.status !== 'failed')) expect(mine.map((o) => o.marker)).toContain(row.description);
    }
    // Nothing half-written: per key, history versions are 1..n without gaps, the latest is not a
    // delete and its snapshot equals the row (name, description, prefix, enabled, roles); no
    // history is left for a key that is gone without a recorded delete.
    const inconsistent = await sql(
      db.url,
      `SELECT k.id FROM api_keys k
        JOIN LATERAL (SELECT count(*) AS n, max(version) AS v FROM api_key_changes c WHERE c.api_key_id = k.id) agg ON true
        LEFT JOIN LATERAL (SELECT operation, snapshot FROM api_key_changes c WHERE c.api_key_id = k.id ORDER BY version DESC LIMIT 1) h ON true
        WHERE agg.n = 0 OR agg.n <> agg.v
           OR h.operation = 'delete'
           OR h.snapshot->>'name' IS DISTINCT FROM k.name
           OR h.snapshot->>'description' IS DISTINCT FROM k.description
           OR h.snapshot->>'keyPrefix' IS DISTINCT FROM k.key_prefix
           OR (h.snapshot->>'isEnabled')::boolean IS DISTINCT FROM k.is_enabled
           OR coalesce((SELECT array_agg((r->>'id')::int ORDER BY (r->>'id')::int) FROM jsonb_array_elements(h.snapshot->'roles') r), '{}')
              <> coalesce((SELECT array_agg(role_id ORDER BY role_id) FROM api_key_roles x WHERE x.api_key_id = k.id), '{}')`,
    );
    expect(inconsistent).toEqual([]);
    const orphans = await sql(
      db.url,
      `SELECT api_key_id FROM api_key_changes c
        WHERE NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = c.api_key_id)
        GROUP BY api_key_id HAVING bool_and(operation <> 'delete')`,
    );
    expect(orphans).toEqual([]);
    // A failed create left either a whole key or nothing.
    for (const o of failed.filter((x) => x.kind === 'create')) {
      const rows = await sql<{ roles: number }>(
        db.url,
        'SELECT (SELECT count(*)::int FROM api_key_roles r WHERE r.api_key_id = k.id) AS roles FROM api_keys k WHERE k.name = $1',
        [`burst-${o.marker}`],
      );
      for (const r of rows) expect(r.roles).toBe(1);
    }
    second.server.child.kill('SIGTERM');
    expect((await second.server.exited).code).toBe(0);
  }, 120_000);
});

describe('SIGTERM under load', () => {
  it('in-flight requests complete, new connections are refused, lastUsedAt and security events are flushed, exit 0 within the deadline', async () => {
    const db = await database();
    const infra = generateKey();
    // Long flush intervals: only the shutdown flush can write what this test checks.
    const { server, port, base } = await launch({
      DATABASE_URL: db.url,
      JIM_INFRASTRUCTURE_API_KEY: infra,
      LAST_USED_FLUSH_MS: '600000',
      SECURITY_EVENTS_FLUSH_MS: '600000',
      SHUTDOWN_TIMEOUT_MS: '5000',
    });
    const headers = { 'x-api-key': infra, 'content-type': 'application/json' };
    const created = (await (await fetch(`${base}/apikeys`, { method: 'POST', headers, body: JSON.stringify({ name: 'used', roleIds: [3] }) })).json()) as {
      id: string;
      key: string;
    };
    expect((await fetch(`${base}/userinfo`, { headers: { 'x-api-key': created.key } })).status).toBe(200);
    for (let i = 0; i < 3; i++) await fetch(`${base}/userinfo`, { headers: { 'x-api-key': generateKey() } });
    expect(await sql(db.url, 'SELECT last_used_at FROM api_keys WHERE id = $1', [created.id])).toEqual([{ last_used_at: null }]);

    // Load: a stream of creates in flight when the signal arrives. Each has a unique name, so the
    // database tells which were processed.
    let stop = false;
    const answered: Array<{ name: string; status: number }> = [];
    const unanswered: Array<{ name: string; why: string }> = [];
    const worker = async () => {
      while (!stop) {
        const name = `load-${randomUUID()}`;
        try {
          const r = await fetch(`${base}/apikeys`, { method: 'POST', headers, body: JSON.stringify({ name, roleIds: [] }) });
          await r.arrayBuffer();
          answered.push({ name, status: r.status });
        } catch (err) {
          // Refused, reset while connecting, or a kept-alive socket closed as it was reused:
          // the request never reached a handler (checked below).
          const cause = (err as { cause?: { code?: string; message?: string } }).cause;
          unanswered.push({ name, why: cause?.code ?? cause?.message ?? String(err) });
          return;
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await new Promise((r) => setTimeout(r, 300));
    const signalled = Date.now();
    process.kill(serverPid(server)!, 'SIGTERM');
    // The listener closes first: new connections are refused while in-flight work finishes.
    let refusedNew = false;
    for (let i = 0; i < 200 && !refusedNew; i++) {
      refusedNew = !(await portAnswers(port));
      if (!refusedNew) await new Promise((r) => setTimeout(r, 10));
    }
    const { code } = await server.exited;
    const tookMs = Date.now() - signalled;
    stop = true;
    await Promise.all(workers);

    expect(code, server.output()).toBe(0);
    expect(tookMs).toBeLessThan(5_000 + 2_000); // SHUTDOWN_TIMEOUT_MS, with room for the flushes
    expect(refusedNew).toBe(true);
    // Every answer is a 201, or 503 SHUTTING_DOWN for a request on a kept-alive connection.
    expect(answered.filter((a) => a.status !== 201 && a.status !== 503)).toEqual([]);
    const acknowledged = answered.filter((a) => a.status === 201);
    expect(acknowledged.length).toBeGreaterThan(0);
    // What was acknowledged is stored; nothing that went unanswered was processed (no request
    // was cut after a handler took it).
    const stored = new Set((await sql<{ name: string }>(db.url, "SELECT name FROM api_keys WHERE name LIKE 'load-%'")).map((r) => r.name));
    expect(stored.size).toBe(acknowledged.length);
    for (const a of acknowledged) expect(stored.has(a.name)).toBe(true);
    expect(unanswered.filter((u) => stored.has(u.name))).toEqual([]);
    // The buffered writes were flushed by the shutdown.
    const [used] = await sql<{ last_used_at: Date | null }>(db.url, 'SELECT last_used_at FROM api_keys WHERE id = $1', [created.id]);
    expect(used.last_used_at).not.toBeNull();
    const events = await sql<{ n: number }>(db.url, "SELECT coalesce(sum(count), 0)::int AS n FROM security_events WHERE reason = 'API_KEY_INVALID'");
    expect(events[0].n).toBe(3);
  }, 120_000);
});
