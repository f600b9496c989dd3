// npm run soak — mixed traffic at a steady rate against a real server process for SOAK_SECONDS
// (default 120; CI runs 30), from a separate load process (bench/soak-load.ts). Prints requests
// by status, p50/p99 per route, and the server's RSS at start, end and peak. Fails (exit 1) on
// any 5xx other than 503 OVERLOADED (counted), when the server dies, when the RSS peaks above
// SOAK_MAX_RSS_MB, or when the JS heap's floor (its lowest samples, after V8's lazy major GCs)
// rises by more than SOAK_MAX_HEAP_GROWTH_MB from the first half of the run to the second.
// Database: a fresh one on BENCH_DATABASE_URL / DATABASE_URL, else an embedded PostgreSQL.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateKey } from '../src/auth/key-format.js';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { freePort, query } from './support.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const SECONDS = Number(process.env.SOAK_SECONDS ?? 120);
// Sustainable on 2 cores with production argon2 (creations and wrong secrets cost ~46 ms each).
const RPS = Number(process.env.SOAK_RPS ?? 50);
const MAX_RSS_MB = Number(process.env.SOAK_MAX_RSS_MB ?? 768);
const MAX_HEAP_GROWTH_MB = Number(process.env.SOAK_MAX_HEAP_GROWTH_MB ?? 64);

/** The process's RSS in MB; null once it is gone. */
const rssMb = (pid: number): number | null => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
};

async function main() {
  let adminUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL;
  let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
  const dir = await mkdtemp(path.join(tmpdir(), 'keyward-soak-'));
  if (!adminUrl) {
    embedded = await startEmbeddedPostgres(dir, { info() {}, warn() {}, debug() {} });
    adminUrl = embedded.url;
  }
  const dbName = `keyward_soak_${randomBytes(4).toString('hex')}`;
  await query(adminUrl, `CREATE DATABASE "${dbName}"`);
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  const port = await freePort();
  const metricsPort = await freePort();
  const infra = generateKey();
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: u.toString(),
      PORT: String(port),
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      JIM_INFRASTRUCTURE_API_KEY: infra,
      RATE_LIMIT_ENABLED: 'false',
      // Our own metrics tell the JavaScript heap from the rest of the RSS.
      METRICS_ENABLED: 'true',
      METRICS_PORT: String(metricsPort),
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const serverExited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  const alive = () => server.exitCode === null && server.signalCode === null;
  let status: number;
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (i > 600 || !alive()) throw new Error('server did not become healthy');
      if (await fetch(`${base}/api/v1/health`).then((r) => r.ok, () => false)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const rssStart = rssMb(server.pid!) ?? NaN;
    let rssPeak = rssStart;
    const samples: number[] = [];
    const heap: number[] = [];
    const heapUsedMb = async () => {
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text(), () => '');
      const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
      return m ? Math.round(Number(m[1]) / 1048576) : NaN;
    };
    const sampler = setInterval(() => {
      const now = rssMb(server.pid!);
      if (now === null) return;
      rssPeak = Math.max(rssPeak, now);
      samples.push(now);
      void heapUsedMb().then((h) => Number.isFinite(h) && heap.push(h));
    }, 1000);
    process.stdout.write(`soak: ${SECONDS} s at ${RPS} req/s against ${base} (node ${process.version}); RSS at start ${rssStart} MB\n`);

    const load = spawn(process.execPath, ['--import', 'tsx', 'bench/soak-load.ts'], {
      cwd: ROOT,
      env: { ...process.env, SOAK_BASE: base, SOAK_KEY: infra, SOAK_SECONDS: String(SECONDS), SOAK_RPS: String(RPS) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    load.stdout.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => load.on('close', resolve));
    clearInterval(sampler);
    const died = !alive();
    const rssEnd = rssMb(server.pid!) ?? NaN;
    if (code !== 0) throw new Error(`load generator failed (${code})`);
    type Pcts = { p50: number; p99: number };
    const report = JSON.parse(out) as {
      byStatus: Record<string, number>;
      routes: Record<string, Pcts & { n: number }>;
      errors: number;
      overloaded: number;
      sent: number;
      timing: { unknownPrefix: Pcts; wrongSecretRealPrefix: Pcts };
    };

    process.stdout.write(`requests: ${report.sent} sent, ${report.errors} transport errors\n`);
    process.stdout.write(`by status: ${JSON.stringify(report.byStatus)}\n`);
    process.stdout.write('route                                   n      p50 ms   p99 ms\n');
    for (const [route, r] of Object.entries(report.routes)) {
      process.stdout.write(`${route.padEnd(38)} ${String(r.n).padStart(6)} ${r.p50.toFixed(1).padStart(8)} ${r.p99.toFixed(1).padStart(8)}\n`);
    }
    process.stdout.write(`RSS: start ${rssStart} MB, end ${rssEnd} MB, peak ${rssPeak} MB\n`);
    const every = Math.max(1, Math.floor(samples.length / 12));
    process.stdout.write(`RSS over time (MB, every ${every} s): ${samples.filter((_, i) => i % every === 0).join(' ')}\n`);
    process.stdout.write(`JS heap used over time (MB): ${heap.filter((_, i) => i % every === 0).join(' ')}\n`);
    const fiveHundreds = Object.entries(report.byStatus)
      .filter(([s]) => Number(s) >= 500)
      .reduce((n, [s, c]) => n + (s === '503' ? c - report.overloaded : c), 0);
    // The heap's floor: the lowest sample of each half (V8 lets the old space grow between major GCs).
    const half = Math.floor(heap.length / 2);
    const floor = (xs: number[]) => (xs.length ? Math.min(...xs) : NaN);
    const heapGrowth = floor(heap.slice(half)) - floor(heap.slice(0, half));
    process.stdout.write(`JS heap floor: first half ${floor(heap.slice(0, half))} MB, second half ${floor(heap.slice(half))} MB\n`);
    const problems = [
      died ? 'the server died' : '',
      !Number.isFinite(rssPeak) ? 'no RSS samples' : '',
      heapGrowth > MAX_HEAP_GROWTH_MB ? `JS heap floor rose ${heapGrowth} MB (> ${MAX_HEAP_GROWTH_MB})` : '',
      fiveHundreds ? `${fiveHundreds} 5xx replies other than 503 OVERLOADED` : '',
      report.errors ? `${report.errors} transport errors` : '',
      rssPeak > MAX_RSS_MB ? `RSS peaked at ${rssPeak} MB (> ${MAX_RSS_MB})` : '',
    ].filter(Boolean);
    process.stdout.write(`503 OVERLOADED: ${report.overloaded}\n`);
    const t = report.timing;
    process.stdout.write(
      `timing (idle, 100 each): unknown prefix p50 ${t.unknownPrefix.p50.toFixed(1)} ms p99 ${t.unknownPrefix.p99.toFixed(1)} ms; ` +
        `wrong secret for a real prefix p50 ${t.wrongSecretRealPrefix.p50.toFixed(1)} ms p99 ${t.wrongSecretRealPrefix.p99.toFixed(1)} ms\n`,
    );
    process.stdout.write(problems.length ? `soak: FAILED: ${problems.join('; ')}\n` : 'soak: passed\n');
    status = problems.length ? 1 : 0;
  } finally {
    if (alive()) server.kill('SIGTERM');
    await serverExited;
    if (embedded) await embedded.stop();
    else await query(adminUrl, `DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(status);
}

main().catch((err) => {
  process.stderr.write(`soak: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
