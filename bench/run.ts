// npm run bench — the authentication path, measured on this machine in one run.
// Starts real server processes against a real PostgreSQL (a fresh database on BENCH_DATABASE_URL
// or DATABASE_URL when set, otherwise an embedded PostgreSQL in a temporary folder) and drives
// them with autocannon in separate processes. Prints one `name: value` line per result and
// writes them all to bench/results/latest.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { createKeyHasher } from '../src/auth/hasher.js';
import { generateKey } from '../src/auth/key-format.js';
import { loadConfig } from '../src/config.js';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { applyMigrations } from '../src/db/migrate.js';
import { wildcardToLike } from '../src/services/paging.js';
import { listStatement } from '../src/store/api-keys.js';
import { freePort, query } from './support.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 50;
const results: Record<string, number | string> = {};
const children: ChildProcess[] = [];

function report(name: string, value: number | string) {
  results[name] = value;
  process.stdout.write(`${name}: ${value}\n`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
const round = (x: number, d = 2) => Number(x.toFixed(d));

async function startServer(databaseUrl: string, infraKey: string) {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      JIM_INFRASTRUCTURE_API_KEY: infraKey,
      RATE_LIMIT_ENABLED: 'false', // measure authentication, not rate limiting
      // Let a run try other argon2 bounds.
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('ARGON2_') || k.startsWith('AUTH_CACHE_'))),
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${base}/api/v1/health`)).ok) return { base, child };
    } catch {
      // starting
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('server did not become healthy');
}

function autocannon(url: string, headers: string[] = []): Promise<{ rps: number; p99: number; non2xx: number }> {
  const bin = path.join(ROOT, 'node_modules/autocannon/autocannon.js');
  const args = [bin, '-c', String(CONNECTIONS), '-d', String(SECONDS), '-j', ...headers.flatMap((h) => ['-H', h]), url];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited ${code}`));
      const r = JSON.parse(out);
      resolve({ rps: r.requests.average, p99: r.latency.p99, non2xx: r.non2xx });
    });
  });
}

function flood(url: string, prefix: string): { done: Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/flood.ts', url, prefix, String(SECONDS + 1), '32'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  return { done: new Promise((resolve) => child.on('exit', () => resolve(out.trim()))) };
}

async function api(base: string, key: string, method: string, url: string, body?: object) {
  const res = await fetch(base + url, {
    method,
    headers: { 'x-api-key': key, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function main() {
  report('node', process.version);
  report('cores', availableParallelism());
  const config = loadConfig({ ...process.env, DATABASE_URL: undefined });
  const hasher = createKeyHasher(config.argon2);
  const verifyTimes: number[] = [];
  const sample = generateKey();
  const sampleHash = await hasher.hash(sample);
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await hasher.verify(sampleHash, sample);
    verifyTimes.push(performance.now() - t);
  }
  const verifyMs = median(verifyTimes);
  report('argon2_verify_median_ms', round(verifyMs, 1));

  // A fresh database for the run.
  let adminUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL;
  let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
  let embeddedDir: string | undefined;
  if (!adminUrl) {
    embeddedDir = await mkdtemp(path.join(tmpdir(), 'keyward-bench-'));
    embedded = await startEmbeddedPostgres(embeddedDir, { info() {}, warn() {}, debug() {} });
    adminUrl = embedded.url;
  }
  report('database', embedded ? 'embedded PostgreSQL' : 'DATABASE_URL / BENCH_DATABASE_URL');
  const dbName = `keyward_bench_${randomBytes(4).toString('hex')}`;
  await query(adminUrl, `CREATE DATABASE "${dbName}"`);
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  const url = u.toString();
  try {
    await applyMigrations(url, { info() {}, debug() {} });
    const infra = generateKey();
    const a = await startServer(url, infra);
    const reader = await api(a.base, infra, 'POST', '/api/v1/apikeys', { name: 'bench-reader', roleIds: [3] });
    const key = reader.json.key as string;
    await api(a.base, key, 'GET', '/api/v1/userinfo'); // cached from here on

    // 1–3: alternating rounds of baseline, cached key, cached key under a wrong-secret flood.
    const r1: number[] = [];
    const r2: number[] = [];
    const r3: number[] = [];
    let floodSummary = '';
    for (let i = 0; i < ROUNDS; i++) {
      r1.push((await autocannon(`${a.base}/api/v1/health/live`)).rps);
      const cached = await autocannon(`${a.base}/api/v1/userinfo`, [`x-api-key=${key}`]);
      if (cached.non2xx) throw new Error(`cached-key run had ${cached.non2xx} non-2xx replies`);
      r2.push(cached.rps);
      const f = flood(`${a.base}/api/v1/userinfo`, key.slice(0, 16));
      const underFlood = await autocannon(`${a.base}/api/v1/userinfo`, [`x-api-key=${key}`]);
      floodSummary = await f.done;
      const flooded = JSON.parse(floodSummary) as { byStatus: Record<string, number> };
      // The flood must really have made the server verify wrong secrets, or the ratio means nothing.
      if (!(flooded.byStatus['401'] > 0)) throw new Error(`the flood got no 401s: ${floodSummary}`);
      r3.push(underFlood.rps);
    }
    report('1_noop_rps_median', Math.round(median(r1)));
    report('2_cached_userinfo_rps_median', Math.round(median(r2)));
    report('ratio_2_over_1', round(median(r2.map((x, i) => x / r1[i]))));
    report('3_cached_userinfo_under_flood_rps_median', Math.round(median(r3)));
    report('ratio_3_over_2', round(median(r3.map((x, i) => x / r2[i]))));
    report('3_flood_last_run', floodSummary);

    // 4: the first (uncached) request of 200 fresh keys.
    const fresh: string[] = [];
    for (let i = 0; i < 200; i++) fresh.push((await api(a.base, infra, 'POST', '/api/v1/apikeys', { name: `fresh-${i}`, roleIds: [3] })).json.key);
    const first: number[] = [];
    for (const k of fresh) {
      const t = performance.now();
      const res = await api(a.base, k, 'GET', '/api/v1/userinfo');
      first.push(performance.now() - t);
      if (res.status !== 200) throw new Error(`fresh key got ${res.status}`);
    }
    report('4_first_request_p50_ms', round(pct(first, 50), 1));
    report('4_first_request_p99_ms', round(pct(first, 99), 1));
    report('4_first_request_p99_in_argon2_verifies', round(pct(first, 99) / verifyMs));

    // 5: revocation propagation between two instances.
    const b = await startServer(url, infra);
    const target = await api(a.base, infra, 'POST', '/api/v1/apikeys', { name: 'revocable', roleIds: [3] });
    const tKey = target.json.key as string;
    const tUrl = `/api/v1/apikeys/${target.json.id}`;
    const delays: number[] = [];
    let stale = 0;
    let probes = 0;
    for (let i = 0; i < 200; i++) {
      for (const base of [a.base, b.base]) {
        for (let w = 0; w < 1000 && (await api(base, tKey, 'GET', '/api/v1/userinfo')).status !== 200; w++);
      }
      // Keep requests with the key flowing through A across the change; any that started after
      // A's reply and still succeeded is a stale success.
      let replied = Number.POSITIVE_INFINITY;
      let loading = true;
      const load = Array.from({ length: 4 }, async () => {
        while (loading) {
          const started = performance.now();
          const { status } = await api(a.base, tKey, 'GET', '/api/v1/userinfo');
          if (started > replied) {
            probes++;
            if (status === 200) stale++;
          }
        }
      });
      await new Promise((r) => setTimeout(r, 2));
      const off = await api(a.base, infra, 'PATCH', tUrl, { isEnabled: false });
      replied = performance.now();
      if (off.status !== 200) throw new Error(`disable failed: ${off.status}`);
      while ((await api(b.base, tKey, 'GET', '/api/v1/userinfo')).status === 200) {
        if (performance.now() - replied > 5_000) throw new Error('instance B never refused the key');
      }
      delays.push(performance.now() - replied);
      loading = false;
      await Promise.all(load);
      await api(a.base, infra, 'PATCH', tUrl, { isEnabled: true });
    }
    report('5_revocation_to_other_instance_p50_ms', round(pct(delays, 50)));
    report('5_revocation_to_other_instance_p99_ms', round(pct(delays, 99)));
    report('5_stale_successes_on_origin', stale);
    report('5_origin_requests_after_reply', probes);

    // 6: a prefix search among 100,000 keys (one precomputed hash for all of them).
    await query(
      url,
      `INSERT INTO api_keys (id, name, key_prefix, hash, updated_at)
       SELECT gen_random_uuid(), 'svc-' || g, 'jim_ak_' || substr(md5(g::text), 1, 9), $1, now()
       FROM generate_series(1, 100000) g`,
      [sampleHash],
    );
    await query(url, 'ANALYZE api_keys');
    const listTimes: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      const res = await api(a.base, infra, 'GET', '/api/v1/apikeys?name=svc-12*&limit=100');
      listTimes.push(performance.now() - t);
      if (res.status !== 200 || res.json.length !== 100) throw new Error(`list returned ${res.status}`);
    }
    report('6_list_100k_prefix_p50_ms', round(pct(listTimes, 50)));
    report('6_list_100k_prefix_p99_ms', round(pct(listTimes, 99)));
    // The plan of the very statement list() sends, with its parameters bound as at run time.
    const statement = listStatement({ likePattern: wildcardToLike('svc-12*'), take: 101 });
    const plan = await query<{ 'QUERY PLAN': string }>(url, `EXPLAIN ${statement.text}`, statement.values);
    report(
      '6_query_plan',
      plan
        .map((r) => r['QUERY PLAN'].trim())
        .filter((l) => /Scan|Index Cond|Limit/.test(l))
        .join(' | '),
    );
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await query(adminUrl, `DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => {});
    await embedded?.stop();
    if (embeddedDir) await rm(embeddedDir, { recursive: true, force: true });
  }
  const out = path.join(ROOT, 'bench/results');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'latest.json'), `${JSON.stringify({ at: new Date().toISOString(), ...results }, null, 2)}\n`);
}

main().catch((err) => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
