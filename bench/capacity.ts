// npm run bench, section 8: the figures the capacity model (README "Capacity") is built from.
//   a. cached authenticated requests per second per core (from section 1: the server runs on one core);
//   b. database transactions and rows written per second per 1,000 active keys, under steady
//      traffic (each key once a second, plus failures): lastUsedAt, security events, usage counters;
//   c. NOTIFY fan-out with three instances listening: the writer's reply time alone and with two
//      peers confirming, the CPU a change costs each listener, the database transactions per change;
//   d. memory per 100,000 cached keys (heap and RSS after a full collection).
// Each part has a server of its own on a database of its own. argon2 is cheap here (NODE_ENV=test):
// none of these figures depends on its cost, and 100,000 first uses at the production cost would
// take 75 minutes.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createKeyHasher } from '../src/auth/hasher.js';
import { generateKey, keyPrefixOf } from '../src/auth/key-format.js';
import { applyMigrations } from '../src/db/migrate.js';
import { query, startServer } from './support.js';

export interface CapacityContext {
  adminUrl: string;
  report: (name: string, value: number | string) => void;
  /** Section 1's figures, reused for part a. */
  authedRps: number;
  authedCpuUs: number;
  steadySeconds: number;
}

const round = (x: number, d = 2) => Number(x.toFixed(d));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CHEAP = {
  NODE_ENV: 'test',
  LOG_LEVEL: 'error',
  ARGON2_MEMORY_KIB: '8',
  ARGON2_TIME_COST: '1',
  ARGON2_PARALLELISM: '1',
  ARGON2_MAX_QUEUE: '1000',
  BENCH_ROUTES: 'true',
  TRUST_PROXY: '127.0.0.1',
  RATE_LIMIT_KEY_MAX: '10000000',
};

/** Each key's first use (argon2, then cached), `concurrency` at a time; how many failed. */
async function firstUses(base: string, secrets: string[], concurrency: number): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < secrets.length) {
        const s = secrets[next++]!;
        if ((await get(base, '/bench/authed', { 'x-api-key': s })) !== 200) failed++;
      }
    }),
  );
  return failed;
}

async function freshDatabase(adminUrl: string) {
  const name = `keyward_bench_cap_${randomBytes(4).toString('hex')}`;
  await query(adminUrl, `CREATE DATABASE "${name}"`);
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  await applyMigrations(url, { info() {}, debug() {} });
  return { name, url, drop: () => query(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).then(() => {}) };
}

/** `n` Reader keys written straight into the table, each with its own (cheap) hash; returns their secrets. */
async function insertKeys(url: string, n: number, label: string): Promise<string[]> {
  const hasher = createKeyHasher({ memoryKib: 8, timeCost: 1, parallelism: 1 });
  const secrets = Array.from({ length: n }, () => generateKey());
  for (let i = 0; i < n; i += 2_000) {
    const batch = secrets.slice(i, i + 2_000);
    const hashes = await Promise.all(batch.map((s) => hasher.hash(s)));
    await query(
      url,
      `WITH k AS (
         INSERT INTO api_keys (id, name, key_prefix, hash, updated_at)
         SELECT gen_random_uuid(), $1 || (g.i + $4), p, h, now() FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS g(p, h, i)
         RETURNING id)
       INSERT INTO api_key_roles (api_key_id, role_id) SELECT id, 3 FROM k`,
      [label, batch.map(keyPrefixOf), hashes, i],
    );
  }
  return secrets;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
function get(base: string, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(`${base}${path}`, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** The database's own counters (pg_stat_*), which backends report about once a second. */
async function dbCounters(url: string, name: string) {
  const [db] = await query<{ xacts: string; ins: string; upd: string; del: string; wal: string }>(
    url,
    `SELECT xact_commit + xact_rollback AS xacts, tup_inserted AS ins, tup_updated AS upd, tup_deleted AS del,
            pg_current_wal_lsn() - '0/0'::pg_lsn AS wal
       FROM pg_stat_database WHERE datname = $1`,
    [name],
  );
  const tables = await query<{ relname: string; ins: string; upd: string; hot: string }>(
    url,
    `SELECT relname, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname IN ('api_keys', 'security_events')`,
  );
  const t = (rel: string) => tables.find((r) => r.relname === rel) ?? { ins: '0', upd: '0', hot: '0' };
  return {
    xacts: Number(db!.xacts),
    /** The whole server's WAL position (only this run writes to it while the bench runs). */
    walBytes: Number(db!.wal),
    rows: Number(db!.ins) + Number(db!.upd) + Number(db!.del),
    keyUpdates: Number(t('api_keys').upd),
    keyHotUpdates: Number(t('api_keys').hot),
    eventRows: Number(t('security_events').ins) + Number(t('security_events').upd),
  };
}

async function stats(base: string, gc = false) {
  return (await fetch(`${base}/bench/stats${gc ? '?gc=true' : ''}`)).json() as Promise<{ cpuUs: number; rssBytes: number; heapUsedBytes: number; cacheEntries: number }>;
}

export async function benchCapacity(ctx: CapacityContext) {
  const { report } = ctx;
  // The load below is generated in this process: keep it off the server's core.
  const cores = availableParallelism();
  if (cores > 1) spawnSync('taskset', ['-a', '-p', '-c', String(cores - 1), String(process.pid)], { stdio: 'ignore' });

  // a.
  report('8a_cached_auth_rps_per_core_measured', Math.round(ctx.authedRps));
  report('8a_cached_auth_rps_per_core_from_cpu', Math.round(1e6 / ctx.authedCpuUs));

  // b. 1,000 active keys, each used once a second, with 1 % failures (unknown prefixes, and wrong secrets for real ones).
  {
    const db = await freshDatabase(ctx.adminUrl);
    try {
      const server = await startServer({ ...CHEAP, DATABASE_URL: db.url });
      const secrets = await insertKeys(db.url, 1_000, 'active-');
      const warmFailures = await firstUses(server.base, secrets, 8);
      if (warmFailures) throw new Error(`${warmFailures} first uses failed`);
      const statuses: Record<number, number> = {};
      let sent = 0;
      let running = true;
      const traffic = (async () => {
        let tick = 0;
        while (running) {
          const t = performance.now();
          // Every 10 ms: 10 keys in turn (1,000 a second), and on every 10th tick one failure from one of 100 addresses.
          for (let j = 0; j < 10; j++) {
            const s = secrets[(tick * 10 + j) % secrets.length]!;
            sent++;
            void get(server.base, '/bench/authed', { 'x-api-key': s, 'x-forwarded-for': `198.51.100.${(tick * 10 + j) % 250}` }).then((c) => (statuses[c] = (statuses[c] ?? 0) + 1));
          }
          if (tick % 10 === 0) {
            const real = secrets[tick % 1000]!;
            const wrong = tick % 50 === 0 ? real.slice(0, -1) + (real.endsWith('0') ? '1' : '0') : generateKey();
            sent++;
            void get(server.base, '/bench/authed', { 'x-api-key': wrong, 'x-forwarded-for': `203.0.113.${(tick / 10) % 100}` }).then((c) => (statuses[c] = (statuses[c] ?? 0) + 1));
          }
          tick++;
          await sleep(Math.max(0, 10 - (performance.now() - t)));
        }
      })();
      // Past the first uses (each key's first lastUsedAt write) and one stats interval.
      await sleep(15_000);
      const c1 = await dbCounters(db.url, db.name);
      const sent1 = sent;
      const t1 = performance.now();
      await sleep(ctx.steadySeconds * 1000);
      const c2 = await dbCounters(db.url, db.name);
      const seconds = (performance.now() - t1) / 1000;
      const rate = (sent - sent1) / seconds;
      running = false;
      await traffic;
      const per1000 = (x: number) => round(x / seconds, 2);
      report('8b_active_keys', 1_000);
      report('8b_request_rate_per_s', Math.round(rate));
      report('8b_window_s', round(seconds, 1));
      report('8b_replies', Object.entries(statuses).map(([k, v]) => `${k}×${v}`).join(' '));
      // Reads count too: outside an explicit transaction each statement is one.
      report('8b_db_transactions_per_s_per_1000_active_keys', per1000(c2.xacts - c1.xacts));
      report('8b_db_wal_kib_per_s_per_1000_active_keys', per1000((c2.walBytes - c1.walBytes) / 1024));
      report('8b_db_rows_written_per_s_per_1000_active_keys', per1000(c2.rows - c1.rows));
      report('8b_last_used_rows_per_s_per_1000_active_keys', per1000(c2.keyUpdates - c1.keyUpdates));
      report('8b_last_used_hot_update_share', round((c2.keyHotUpdates - c1.keyHotUpdates) / Math.max(1, c2.keyUpdates - c1.keyUpdates)));
      report('8b_security_event_rows_per_s', per1000(c2.eventRows - c1.eventRows));
      report('8b_usage_counter_rows_per_s', 'none: per-key usage counting is not built yet');
      server.child.kill('SIGTERM');
      await new Promise((r) => server.child.once('exit', r));
    } finally {
      await db.drop();
    }
  }

  // c. Three instances listening; 200 changes through one, alone first, then with two peers.
  {
    const db = await freshDatabase(ctx.adminUrl);
    try {
      const infra = generateKey();
      const writer = await startServer({ ...CHEAP, DATABASE_URL: db.url, JIM_INFRASTRUCTURE_API_KEY: infra });
      const created = await fetch(`${writer.base}/api/v1/apikeys`, {
        method: 'POST',
        headers: { 'x-api-key': infra, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'changed', roleIds: [3] }),
      }).then((r) => r.json() as Promise<{ id: string }>);
      const change = async (i: number) => {
        const t = performance.now();
        const res = await fetch(`${writer.base}/api/v1/apikeys/${created.id}`, {
          method: 'PATCH',
          headers: { 'x-api-key': infra, 'content-type': 'application/json' },
          body: JSON.stringify({ description: `change ${i}` }),
        });
        if (res.status !== 200) throw new Error(`PATCH ${res.status}`);
        await res.arrayBuffer();
        return performance.now() - t;
      };
      const alone: number[] = [];
      for (let i = 0; i < 200; i++) alone.push(await change(i));
      const peers = [await startServer({ ...CHEAP, DATABASE_URL: db.url }), await startServer({ ...CHEAP, DATABASE_URL: db.url })];
      // Backends report their statistics up to 10 s late when idle: every reading below comes
      // after 11 s in a steady state, and the steady state's own rate (heartbeats) is subtracted.
      await sleep(11_000);
      const idleMs = 10_000;
      const [ci0, si0] = [await dbCounters(db.url, db.name), await Promise.all(peers.map((p) => stats(p.base)))];
      await sleep(idleMs);
      const [ci1, si1] = [await dbCounters(db.url, db.name), await Promise.all(peers.map((p) => stats(p.base)))];
      const idleCpuPerMs = si1.reduce((sum, x, i) => sum + x.cpuUs - si0[i]!.cpuUs, 0) / peers.length / idleMs;
      const idleXactsPerMs = (ci1.xacts - ci0.xacts) / idleMs;
      const changes = 500;
      const started = performance.now();
      const withPeers: number[] = [];
      for (let i = 0; i < changes; i++) withPeers.push(await change(1_000 + i));
      const s1 = await Promise.all(peers.map((p) => stats(p.base)));
      const busyMs = performance.now() - started;
      await sleep(11_000);
      const c1 = await dbCounters(db.url, db.name);
      const windowMs = performance.now() - started;
      const listenerUs = s1.reduce((sum, x, i) => sum + x.cpuUs - si1[i]!.cpuUs, 0) / peers.length - idleCpuPerMs * busyMs;
      report('8c_instances_listening', 3);
      report('8c_change_reply_p50_ms_alone', round(pct(alone, 50)));
      report('8c_change_reply_p99_ms_alone', round(pct(alone, 99)));
      report('8c_change_reply_p50_ms_2_peers_confirming', round(pct(withPeers, 50)));
      report('8c_change_reply_p99_ms_2_peers_confirming', round(pct(withPeers, 99)));
      report('8c_listener_cpu_us_per_change', round(listenerUs / changes, 1));
      report('8c_listener_idle_cpu_ms_per_s', round(idleCpuPerMs, 2));
      // The change's own transaction and each peer's confirmation (the heartbeats' rate taken out).
      report('8c_db_transactions_per_change', round((c1.xacts - ci1.xacts - idleXactsPerMs * windowMs) / changes, 2));
      for (const p of [...peers, writer]) p.child.kill('SIGTERM');
      await Promise.all([...peers, writer].map((p) => new Promise((r) => (p.child.exitCode === null ? p.child.once('exit', r) : r(null)))));
    } finally {
      await db.drop();
    }
  }

  // d. 100,000 keys, each used once, so each is cached.
  {
    const db = await freshDatabase(ctx.adminUrl);
    try {
      const n = 100_000;
      const secrets = await insertKeys(db.url, n, 'cached-');
      const server = await startServer({ ...CHEAP, DATABASE_URL: db.url, AUTH_CACHE_MAX_ENTRIES: String(2 * n), LAST_USED_FLUSH_MS: '1000' });
      await get(server.base, '/bench/open', {});
      await sleep(500);
      const before = await stats(server.base, true);
      const failed = await firstUses(server.base, secrets, 16);
      await sleep(2_000); // lastUsedAt flushed: its pending map is empty again
      const after = await stats(server.base, true);
      report('8d_cached_keys', after.cacheEntries);
      report('8d_first_uses_failed', failed);
      report('8d_heap_mib_per_100k_cached_keys', round(((after.heapUsedBytes - before.heapUsedBytes) / 2 ** 20) * (100_000 / after.cacheEntries), 1));
      report('8d_rss_mib_per_100k_cached_keys', round(((after.rssBytes - before.rssBytes) / 2 ** 20) * (100_000 / after.cacheEntries), 1));
      report('8d_bytes_per_cached_key', Math.round((after.heapUsedBytes - before.heapUsedBytes) / after.cacheEntries));
      server.child.kill('SIGTERM');
      await new Promise((r) => server.child.once('exit', r));
    } finally {
      await db.drop();
    }
  }
}
