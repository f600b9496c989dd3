// The embedded database's folder (DATA_DIR): where it is, and that nobody else prepared it.
// The folder and the files keyward keeps in it (the generated password, the owner's pid) must
// belong to the account keyward runs as and be writable by it alone; files are created with
// exclusive-create and no-follow semantics and read only after their owner and mode are checked,
// so a folder or a symlink planted by another account is refused, not trusted.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { canReach, DB_ACCOUNT, rootOwnedDir, type EmbeddedLog, type RunAs } from './embedded-account.js';

/** Where a checkout's cluster goes as root when its own ./data is out of the database account's reach. */
export const RELOCATION_ROOT = '/var/lib/keyward';

const uid = () => process.getuid?.() ?? -1;
const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');

/** Owners a folder may have: ours, or root's (root can do anything anyway; a volume's mount point often is root's). */
const trustedOwner = (owner: number) => owner === uid() || owner === 0;

/**
 * DATA_DIR exists (created 0700 when missing), belongs to us (or root), and nobody else may write
 * it: not other users, and its group only when that is a group of ours (a volume shared through
 * an fsGroup, say). A symlink to it must be ours too: one planted in a shared folder is refused.
 */
export async function ownDir(dir: string, what = 'DATA_DIR'): Promise<string> {
  const link = await lstat(dir).catch(() => null);
  if (link?.isSymbolicLink() && !trustedOwner(link.uid)) {
    throw new Error(`${what} ${dir} is a symbolic link that belongs to uid ${link.uid}: refusing a link another account prepared`);
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const real = await realpath(dir);
  const st = await lstat(real);
  if (!st.isDirectory()) throw new Error(`${what} ${dir} is not a directory`);
  if (!trustedOwner(st.uid)) {
    throw new Error(`${what} ${dir} belongs to uid ${st.uid}, not to the account keyward runs as (uid ${uid()}): refusing a folder another account prepared`);
  }
  const ourGroup = (process.getgroups?.() ?? []).includes(st.gid) || st.gid === process.getgid?.();
  if (st.mode & 0o002 || (st.mode & 0o020 && !ourGroup)) {
    throw new Error(`${what} ${dir} is writable by other users (mode ${octal(st.mode)}): refusing it; chmod go-w it, or use another folder`);
  }
  return real;
}

async function checkedHandle(file: string, flags: number, mode?: number) {
  const fh = await open(file, flags | constants.O_NOFOLLOW, mode);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    if (st.uid !== uid()) throw new Error(`${file} belongs to uid ${st.uid}, not to the account keyward runs as: refusing a file another account prepared`);
    return { fh, st };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** A file only we may read, or null when there is none. Never follows a symlink. */
export async function readPrivateFile(file: string): Promise<string | null> {
  let opened;
  try {
    opened = await checkedHandle(file, constants.O_RDONLY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new Error(`${file} is a symbolic link: refusing it`, { cause: err });
    throw err;
  }
  const { fh, st } = opened;
  try {
    if (st.mode & 0o077) throw new Error(`${file} is readable or writable by other users (mode ${octal(st.mode)}): refusing it; chmod 600 it`);
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * Creates `file` that must not exist yet (O_EXCL: a planted file or symlink makes it fail), and
 * gives it to `owner` through the open handle (never chown by path: the path could be swapped).
 */
export async function createFile(file: string, content: string, mode = 0o600, owner?: { uid: number; gid: number }): Promise<void> {
  const fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode);
    if (owner) await fh.chown(owner.uid, owner.gid);
  } finally {
    await fh.close();
  }
}

/** What a file of ours says, or null; never follows a link (small files only: pids). */
export async function readOwnFile(file: string): Promise<string | null> {
  try {
    const { fh } = await checkedHandle(file, constants.O_RDONLY);
    try {
      return await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
}

/** The per-checkout folder under /var/lib/keyward for a default DATA_DIR that is out of reach. */
export function relocatedDir(dataDir: string): string {
  const checkout = path.basename(path.dirname(dataDir)).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40) || 'keyward';
  return path.join(RELOCATION_ROOT, `${checkout}-${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`);
}

const clusterIn = (dir: string) => spawnSync('test', ['-e', path.join(dir, 'postgres', 'PG_VERSION')]).status === 0;

/**
 * The folder the embedded database lives in. Not as root: DATA_DIR. As root, the cluster runs as
 * the database account, which must be able to enter DATA_DIR: an explicit DATA_DIR it cannot
 * reach is an error; the default (./data in a checkout inside a 0700 home, say) moves to a
 * root-owned folder of its own under /var/lib/keyward, the same one on every start.
 */
export async function resolveDataDir(dataDir: string, opts: { relocatable: boolean }, as: RunAs | undefined, log: EmbeddedLog): Promise<string> {
  if (!as) return ownDir(dataDir);
  const moved = opts.relocatable ? relocatedDir(dataDir) : null;
  // Once moved, it stays: whether the home folder is private today must not decide which database a start finds.
  if (moved && clusterIn(moved)) {
    if (clusterIn(dataDir)) {
      throw new Error(`both ${dataDir} and ${moved} hold an embedded database: keep one (move the other away), or set DATA_DIR to choose`);
    }
    await rootOwnedDir(RELOCATION_ROOT, 0o711);
    log.info({ dataDir, dir: moved }, `DATA_DIR is not set: using the embedded database kept for this checkout in ${moved}`);
    return enterable(await ownDir(moved), as);
  }
  // Its parent is what matters: DATA_DIR itself is ours to let the account through.
  if (!canReach(path.dirname(dataDir), as)) {
    if (!opts.relocatable) {
      throw new Error(
        `running as root, the embedded PostgreSQL runs as the OS account ${as.name}, which cannot enter DATA_DIR ${dataDir} (a folder above it is private, e.g. a 0700 home): choose a DATA_DIR whose parent folders others may enter, such as ${RELOCATION_ROOT}, or leave DATA_DIR unset`,
      );
    }
    if (clusterIn(dataDir)) {
      throw new Error(
        `${dataDir} holds an embedded database that the OS account ${as.name} cannot reach (a folder above it is private): let others enter its parent folders (chmod o+x), or set DATA_DIR to where it should live`,
      );
    }
    await rootOwnedDir('/var/lib');
    await rootOwnedDir(RELOCATION_ROOT, 0o711);
    log.info({ dataDir, dir: moved }, `DATA_DIR is not set and ${dataDir} is in a folder the database account ${DB_ACCOUNT} cannot enter: keeping the embedded database in ${moved}`);
    return enterable(await ownDir(moved!), as);
  }
  return enterable(await ownDir(dataDir), as);
}

/** The database account must be able to pass through DATA_DIR to the cluster (the files here stay 0600). */
async function enterable(dir: string, as: RunAs): Promise<string> {
  const st = await lstat(dir);
  if ((st.mode & 0o001) === 0) await chmod(dir, (st.mode & 0o7777) | 0o001);
  if (!canReach(dir, as)) throw new Error(`the OS account ${as.name} cannot enter ${dir}`);
  return dir;
}
