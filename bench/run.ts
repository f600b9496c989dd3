// npm run bench — the authentication path, measured on this machine in one run.
// Starts real server processes against a real PostgreSQL (a fresh database on BENCH_DATABASE_URL
// or DATABASE_URL when set, otherwise an embedded PostgreSQL in a temporary folder) and drives
// them with autocannon in separate processes. Prints one `name: value` line per result and
// writes them all to bench/results/latest.json.
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
import { autocannon, flood, pinning, query, startServer, stopChildren, type FloodResult } from './support.js';
import { benchCapacity } from './capacity.js';
import { benchVerify } from './verify.js';
import { benchUsage } from './usage.js';
import { benchWebhooks } from './webhooks.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CPU_ROUNDS = Number(process.env.BENCH_CPU_ROUNDS ?? 15);
const CPU_SECONDS = Number(process.env.BENCH_CPU_SECONDS ?? 4);
const CONNECTIONS = 50;
const FLOOD_CONCURRENCY = 32;
const FLOOD_ADDRESSES = 256;
/** The load key's own budget, raised so the legitimate load measures authentication, not its own 429s. */
const KEY_MAX = 10_000_000;
const results: Record<string, number | string> = {};
/** BENCH_ONLY=2,3 runs those sections only (1, CPU per request, always runs: the others use its figure). */
const ONLY = process.env.BENCH_ONLY?.split(',').map(Number);
const runs = (section: number) => section === 1 || !ONLY || ONLY.includes(section);

function report(name: string, value: number | string) {
  results[name] = value;
  process.stdout.write(`${name}: ${value}\n`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
const round = (x: number, d = 2) => Number(x.toFixed(d));

interface Stats {
  cpuUs: number;
  argon2Runs: number;
  suspectRuns: number;
  rssBytes: number;
}
const stats = async (base: string): Promise<Stats> => (await fetch(`${base}/bench/stats`)).json() as Promise<Stats>;

/** A load run with the server's CPU time and argon2 work over it. */
async function measured(base: string, url: string, headers: string[] = [], during?: () => Promise<FloodResult>, seconds = SECONDS) {
  const before = await stats(base);
  const [load, flooded] = await Promise.all([autocannon(base + url, { seconds, connections: CONNECTIONS, headers }), during?.()]);
  const after = await stats(base);
  if (load.non2xx) throw new Error(`${url}: ${load.non2xx} non-2xx replies`);
  return { ...load, cpuUs: after.cpuUs - before.cpuUs, argon2Runs: after.argon2Runs - before.argon2Runs, flooded };
}

async function api(base: string, key: string, method: string, url: string, body?: object, headers: Record<string, string> = {}) {
  const res = await fetch(base + url, {
    method,
    headers: { 'x-api-key': key, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function main() {
  report('node', process.version);
  report('cores', availableParallelism());
  report('pinning', pinning);
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
  const work = await mkdtemp(path.join(tmpdir(), 'keyward-bench-work-'));
  try {
    await applyMigrations(url, { info() {}, debug() {} });
    const infra = generateKey();
    // Rate limits at their defaults, but for the load key's own budget; the load generators are the proxy.
    const env = {
      DATABASE_URL: url,
      JIM_INFRASTRUCTURE_API_KEY: infra,
      BENCH_ROUTES: 'true',
      TRUST_PROXY: '127.0.0.1',
      RATE_LIMIT_KEY_MAX: String(KEY_MAX),
      // Let a run try other bounds.
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(ARGON2_|AUTH_|RATE_LIMIT_|REDIS_URL$)/.test(k))),
    };
    report('limits', `defaults but RATE_LIMIT_KEY_MAX=${env.RATE_LIMIT_KEY_MAX}: ip ${config.rateLimit.ipMax}, prefix ${config.rateLimit.prefixMax} per ${config.rateLimit.windowMs / 1000} s, argon2 suspect share ${config.argon2.suspectShare * 100} %, failure delay ${config.authFailureDelayMs} ms`);
    const a = await startServer(env);
    const reader = await api(a.base, infra, 'POST', '/api/v1/apikeys', { name: 'bench-reader', roleIds: [3] });
    const key = reader.json.key as string;
    const auth = [`x-api-key=${key}`];
    await api(a.base, key, 'GET', '/bench/authed'); // cached from here on

    // 1: CPU per request, the same route with and without authentication, in alternating rounds.
    // This machine's noise only ever adds CPU time, so the best round of each is the steadiest
    // figure; the medians are printed beside it.
    // A key with an address allowlist and a limit of its own (issue 18): the hot path's extra cost.
    const guarded = await api(a.base, infra, 'POST', '/api/v1/apikeys', {
      name: 'bench-guarded',
      roleIds: [3],
      allowedCidrs: ['10.0.0.0/8', '127.0.0.0/8', '::1/128'],
      rateLimit: { limit: KEY_MAX, windowSeconds: 60 },
    });
    const guardedAuth = [`x-api-key=${guarded.json.key as string}`];
    await api(a.base, guarded.json.key as string, 'GET', '/bench/authed');
    const open: Awaited<ReturnType<typeof measured>>[] = [];
    const authed: typeof open = [];
    const guardedRuns: typeof open = [];
    for (let i = 0; i < CPU_ROUNDS; i++) {
      open.push(await measured(a.base, '/bench/open', [], undefined, CPU_SECONDS));
      // The two keys take turns going first: a run's place in the round must not be its cost.
      const plain = () => measured(a.base, '/bench/authed', auth, undefined, CPU_SECONDS);
      const withGuards = () => measured(a.base, '/bench/authed', guardedAuth, undefined, CPU_SECONDS);
      if (i % 2) {
        guardedRuns.push(await withGuards());
        authed.push(await plain());
      } else {
        authed.push(await plain());
        guardedRuns.push(await withGuards());
      }
    }
    const perRequest = (rs: typeof open) => rs.map((r) => r.cpuUs / r.total);
    const cpuOpen = Math.min(...perRequest(open));
    const cpuAuthed = Math.min(...perRequest(authed));
    report('1_open_rps_median', Math.round(median(open.map((r) => r.rps))));
    report('1_authed_rps_median', Math.round(median(authed.map((r) => r.rps))));
    report('1_rps_ratio_authed_over_open_median', round(median(authed.map((r, i) => r.rps / open[i].rps))));
    report('1_rps_ratio_authed_over_open_best', round(Math.max(...authed.map((r) => r.rps)) / Math.max(...open.map((r) => r.rps))));
    report('1_open_cpu_us_per_request_best', round(cpuOpen, 1));
    report('1_authed_cpu_us_per_request_best', round(cpuAuthed, 1));
    report('1_auth_cpu_us_per_request_best', round(cpuAuthed - cpuOpen, 2));
    report('1_auth_cpu_us_per_request_median', round(median(perRequest(authed)) - median(perRequest(open)), 2));
    report('1_cpu_ratio_authed_over_open_best', round(cpuAuthed / cpuOpen));
    report('1_cpu_us_per_request_by_round', [open, authed, guardedRuns].map((rs) => perRequest(rs).map((x) => round(x, 1)).join('/')).join(' vs '));
    // The same cached request for a key with an allowlist (the client matched against three
    // blocks) and a limit of its own, against the plain key's.
    const cpuGuarded = Math.min(...perRequest(guardedRuns));
    report('1_allowlisted_cpu_us_per_request_best', round(cpuGuarded, 1));
    report('1_allowlist_and_own_limit_extra_cpu_us_per_request_best', round(cpuGuarded - cpuAuthed, 2));
    report('1_allowlist_and_own_limit_extra_cpu_us_per_request_median', round(median(perRequest(guardedRuns)) - median(perRequest(authed)), 2));

    // 2 and 3: cached traffic while distinct wrong secrets flood in from 256 addresses, for one
    // real prefix (the load key's own), then spread over 1,000 real prefixes.
    async function underFlood(name: string, prefixes: string[]) {
      const file = path.join(work, `${name}.txt`);
      await writeFile(file, `${prefixes.join('\n')}\n`);
      const quiet: number[] = [];
      const loud: number[] = [];
      let argon2Runs = 0;
      let floodSeconds = 0;
      let last: FloodResult | undefined;
      const floodOnce = () => flood(`${a.base}/bench/authed`, { prefixesFile: file, seconds: SECONDS, concurrency: FLOOD_CONCURRENCY, addresses: FLOOD_ADDRESSES });
      for (let i = 0; i < ROUNDS; i++) {
        quiet.push((await measured(a.base, '/bench/authed', auth)).rps);
        const run = await measured(a.base, '/bench/authed', auth, floodOnce);
        last = run.flooded!;
        if (!(last.byStatus['401'] > 0)) throw new Error(`the flood got no 401s: ${JSON.stringify(last)}`);
        loud.push(run.rps);
        argon2Runs += run.argon2Runs;
        floodSeconds += last.seconds;
      }
      report(`${name}_cached_rps_median`, Math.round(median(quiet)));
      report(`${name}_cached_under_flood_rps_median`, Math.round(median(loud)));
      report(`${name}_ratio_under_flood_median`, round(median(loud.map((x, i) => x / quiet[i]))));
      report(`${name}_argon2_verifies_in_flood`, `${argon2Runs} in ${Math.round(floodSeconds)} s`);
      report(`${name}_argon2_verifies_per_minute`, Math.round((argon2Runs / floodSeconds) * 60));
      report(`${name}_flood_rps_last`, Math.round(last!.sent / last!.seconds));
      report(`${name}_flood_replies_last`, JSON.stringify(last!.byStatus));
      return file;
    }
    if (runs(2)) {
      const file = await underFlood('2_flood_1_prefix', [key.slice(0, 16)]);
      // The cost of one refused guess, alone: the prefix's budget is spent by now, so no argon2.
      const before = await stats(a.base);
      const alone = await flood(`${a.base}/bench/authed`, { prefixesFile: file, seconds: SECONDS, concurrency: FLOOD_CONCURRENCY, addresses: FLOOD_ADDRESSES });
      const after = await stats(a.base);
      report('2_flood_alone_rps', Math.round(alone.sent / alone.seconds));
      report('2_flood_alone_argon2_verifies', after.argon2Runs - before.argon2Runs);
      report('2_cpu_us_per_refused_guess', round((after.cpuUs - before.cpuUs) / alone.sent, 1));
    }
    if (runs(3)) {
      await query(
        url,
        `INSERT INTO api_keys (id, name, key_prefix, hash, updated_at)
         SELECT gen_random_uuid(), 'attacked-' || g, 'jim_ak_' || substr(md5('attacked' || g), 1, 9), $1, now()
         FROM generate_series(1, 1000) g`,
        [sampleHash],
      );
      const attacked = (await query<{ key_prefix: string }>(url, `SELECT key_prefix FROM api_keys WHERE name LIKE 'attacked-%'`)).map((r) => r.key_prefix);
      const spread = await underFlood('3_flood_1000_prefixes', attacked);

      // 3 (cont.): first uses of fresh valid keys while the spread flood runs, and one from a flooding address.
      const during: string[] = [];
      for (let i = 0; i < 51; i++) during.push((await api(a.base, infra, 'POST', '/api/v1/apikeys', { name: `during-${i}`, roleIds: [3] })).json.key);
      const running = flood(`${a.base}/bench/authed`, { prefixesFile: spread, seconds: SECONDS * 2, concurrency: FLOOD_CONCURRENCY, addresses: FLOOD_ADDRESSES });
      await new Promise((r) => setTimeout(r, 2_000)); // let it reach full speed
      const firsts: number[] = [];
      for (const k of during.slice(0, 50)) {
        const t = performance.now();
        const res = await api(a.base, k, 'GET', '/bench/authed');
        firsts.push(performance.now() - t);
        if (res.status !== 200) throw new Error(`fresh key during the flood got ${res.status}`);
    }
    const fromFlooder = await api(a.base, during[50], 'GET', '/bench/authed', undefined, { 'x-forwarded-for': '198.18.0.2' });
    await running;
    report('3_first_use_during_flood_p50_in_argon2_verifies', round(pct(firsts, 50) / verifyMs));
    report('3_first_use_during_flood_p99_in_argon2_verifies', round(pct(firsts, 99) / verifyMs));
    report('3_first_use_during_flood_p99_ms', round(pct(firsts, 99), 1));
    report('3_valid_key_from_a_flooding_address_status', fromFlooder.status);
    }

    if (runs(4)) {
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
    }

    if (runs(5)) {
      // 5: revocation propagation between two instances.
      // Both answer refusals at once: the time until B refuses must not be the failure delay, nor
      // may A's delayed refusals hide the requests that would show a stale success.
      const a = await startServer({ ...env, AUTH_FAILURE_DELAY_MS: '0' });
      const b = await startServer({ ...env, AUTH_FAILURE_DELAY_MS: '0' });
      const target = await api(a.base, infra, 'POST', '/api/v1/apikeys', { name: 'revocable', roleIds: [3] });
      const tKey = target.json.key as string;
      const tUrl = `/api/v1/apikeys/${target.json.id}`;
      const delays: number[] = [];
      const disableMs: number[] = [];
      let staleOnB = 0;
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
        const sent = performance.now();
        const off = await api(a.base, infra, 'PATCH', tUrl, { isEnabled: false });
        replied = performance.now();
        disableMs.push(replied - sent);
        if (off.status !== 200) throw new Error(`disable failed: ${off.status}`);
        // B confirmed the change before A replied (src/db/peer-acks.ts): any success here is stale.
        while ((await api(b.base, tKey, 'GET', '/api/v1/userinfo')).status === 200) {
          staleOnB++;
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
    report('5_stale_successes_on_other_instance', staleOnB);
    report('5_disable_reply_p50_ms_with_1_peer_confirming', round(pct(disableMs, 50)));
    report('5_disable_reply_p99_ms_with_1_peer_confirming', round(pct(disableMs, 99)));
    report('5_origin_requests_after_reply', probes);
    }

    if (runs(7)) {
      // 7: service-to-service verification (bench/verify.ts): the verify endpoint, a consumer's cached check, revocation reaching it.
      await benchVerify({ base: a.base, infra, env, api, report, rounds: Math.max(3, Math.min(ROUNDS * 2, 7)), seconds: CPU_SECONDS, connections: CONNECTIONS });
    }

    if (runs(9)) {
      // 9: webhooks (bench/webhooks.ts): the outbox's cost on a change, commit to arrival, throughput.
      await benchWebhooks({ env, infra, api, report });
    }

    if (runs(10)) {
      // 10: usage counting's cost on the cached request (bench/usage.ts): the same server switched on and off.
      await benchUsage({ base: a.base, key, rounds: Math.max(4, Math.min(CPU_ROUNDS, 10)), seconds: CPU_SECONDS, connections: CONNECTIONS, report });
    }

    if (runs(8)) {
      // 8: the capacity model's figures (bench/capacity.ts), each part on a database and server of its own.
      await benchCapacity({
        adminUrl,
        report,
        authedRps: median(authed.map((r) => r.rps)),
        authedCpuUs: cpuAuthed,
        steadySeconds: Number(process.env.BENCH_CAPACITY_SECONDS ?? 60),
      });
    }

    if (runs(6)) {
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
    }
  } finally {
    await stopChildren();
    await rm(work, { recursive: true, force: true });
    await query(adminUrl, `DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => {});
    await embedded?.stop();
    if (embeddedDir) await rm(embeddedDir, { recursive: true, force: true });
  }
  const out = path.join(ROOT, 'bench/results');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'latest.json'), `${JSON.stringify({ at: new Date().toISOString(), ...results }, null, 2)}\n`);
}

main().catch(async (err) => {
  await stopChildren('SIGKILL');
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
