// Helpers the benchmark and the soak share: ports, one-off SQL, the server processes, the load generators.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';

const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * Where `taskset` exists and there are cores to spare, the server runs on the first core and the
 * load generators on the last: sharing cores, each disturbs the other's CPU time per request
 * by ±25 % from run to run. The server's argon2 threads share its core (README "Benchmarks").
 */
const CORES = availableParallelism();
const PINNED = CORES > 1 && spawnSync('taskset', ['-V']).status === 0;
export const pinning = PINNED ? `server on core 0, load generators on core ${CORES - 1}` : 'none';
const pinned = (core: number, args: string[], opts: SpawnOptions) =>
  PINNED ? spawn('taskset', ['-c', String(core), process.execPath, ...args], opts) : spawn(process.execPath, args, opts);
const loadGenerator = (args: string[], opts: SpawnOptions) => pinned(CORES - 1, args, opts);

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** One statement on its own connection. */
export async function query<T extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, values)).rows;
  } finally {
    await c.end();
  }
}

/** Every child process started here, so a failed run can stop them all. */
export const children: ChildProcess[] = [];

/** A keyward server process on `databaseUrl`; resolves once it answers its health check. */
export async function startServer(env: Record<string, string | undefined>) {
  const port = await freePort();
  const child = pinned(0, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, PORT: String(port), NODE_ENV: 'production', LOG_LEVEL: 'warn', LOG_FORMAT: 'json', ...env },
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

/** examples/orders-api as its README runs it, pinned beside the server; resolves once it listens. */
export async function startExample(keywardBase: string, apiKey: string) {
  const port = await freePort();
  const child = pinned(0, ['--import', 'tsx', 'examples/orders-api/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, KEYWARD_URL: keywardBase, KEYWARD_API_KEY: apiKey, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the example exited (${code})`)));
  });
  return { base: `http://127.0.0.1:${port}`, child };
}

/** CPU time a process has used so far, in µs (Linux: /proc/<pid>/stat, in clock ticks of 10 ms). */
export function cpuUsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // utime + stime (fields 14 and 15)
}

export interface LoadResult {
  rps: number;
  p99: number;
  total: number;
  non2xx: number;
}

/** autocannon in its own process: `connections` closed-loop connections for `seconds`. */
export function autocannon(url: string, opts: { seconds: number; connections: number; headers?: string[]; method?: string; body?: string }): Promise<LoadResult> {
  const bin = path.join(ROOT, 'node_modules/autocannon/autocannon.js');
  const request = opts.method ? ['-m', opts.method, ...(opts.body !== undefined ? ['-b', opts.body] : [])] : [];
  const args = [bin, '-c', String(opts.connections), '-d', String(opts.seconds), '-j', ...request, ...(opts.headers ?? []).flatMap((h) => ['-H', h]), url];
  return new Promise((resolve, reject) => {
    const child = loadGenerator(args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited ${code}`));
      const r = JSON.parse(out);
      resolve({ rps: r.requests.average, p99: r.latency.p99, total: r.requests.total, non2xx: r.non2xx });
    });
  });
}

export interface FloodResult {
  sent: number;
  seconds: number;
  byStatus: Record<string, number>;
}

/** bench/flood.ts in its own process: wrong secrets for the prefixes in `prefixesFile`. */
export function flood(url: string, opts: { prefixesFile: string; seconds: number; concurrency: number; addresses: number }): Promise<FloodResult> {
  const args = ['--import', 'tsx', 'bench/flood.ts', url, opts.prefixesFile, String(opts.seconds), String(opts.concurrency), String(opts.addresses)];
  const child = loadGenerator(args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim()) as FloodResult) : reject(new Error(`flood exited ${code}`)))),
  );
}

/** Stops every child process started here and waits for them. */
export async function stopChildren(signal: NodeJS.Signals = 'SIGTERM') {
  for (const c of children) if (c.exitCode === null) c.kill(signal);
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
}
