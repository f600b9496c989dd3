// Debian's PgBouncer in transaction pooling mode in front of the test PostgreSQL: what most
// production databases sit behind. .ci/run installs it (apt-get); where it is missing the tests
// that need it are skipped with the reason printed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, portAnswers } from './server-process.js';

export interface PgBouncer {
  /** `upstream` with host and port replaced by the pooler's. */
  pooled(upstream: string): string;
  pid: number;
  output(): string;
  stop(): Promise<void>;
}

export function findPgBouncer(): { path: string } | { missing: string } {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) if (existsSync(p)) return { path: p };
  const which = spawnSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).stdout.trim();
  if (which) return { path: which };
  return { missing: 'pgbouncer is not installed (Debian package pgbouncer; .ci/run installs it with apt-get)' };
}

/** Starts PgBouncer (transaction mode, `poolSize` server connections per database) in front of `upstreamUrl`'s server. */
export async function startPgBouncer(binary: string, upstreamUrl: string, opts: { poolSize?: number; mode?: 'transaction' | 'session' } = {}): Promise<PgBouncer> {
  const up = new URL(upstreamUrl);
  const dir = await mkdtemp(path.join(tmpdir(), 'keyward-pgbouncer-'));
  const port = await freePort();
  const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
  const user = decodeURIComponent(up.username || 'postgres');
  const password = decodeURIComponent(up.password);
  // `auth_type = any`: clients are not authenticated by the pooler; every server connection logs
  // in as the upstream URL's user (the test server trusts or knows it).
  const ini = [
    '[databases]',
    `* = host=${up.hostname} port=${up.port || 5432} user=${q(user)}${password ? ` password=${q(password)}` : ''}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = any',
    `pool_mode = ${opts.mode ?? 'transaction'}`,
    `default_pool_size = ${opts.poolSize ?? 2}`,
    'max_client_conn = 500',
    'logfile =',
    'pidfile =',
    'log_connections = 0',
    'log_disconnections = 0',
    '',
  ].join('\n');
  const file = path.join(dir, 'pgbouncer.ini');
  await writeFile(file, ini, { mode: 0o600 });
  // PgBouncer refuses to run as root; it reads its configuration before it switches user, so
  // the file can stay in our private folder.
  const asRoot = process.getuid?.() === 0;
  const child: ChildProcess = spawn(binary, [...(asRoot ? ['-u', 'nobody'] : []), file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const started = Date.now();
  while (!(await portAnswers(port))) {
    if (child.exitCode !== null || Date.now() - started > 10_000) {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
      throw new Error(`pgbouncer did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pooled(upstream: string) {
      const u = new URL(upstream);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    pid: child.pid!,
    output: () => out,
    async stop() {
      if (child.exitCode === null) {
        try {
          process.kill(child.pid!, 'SIGCONT');
        } catch {
          // gone already
        }
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
