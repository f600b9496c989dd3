// The cluster folder (DATA_DIR/postgres) belongs to the account PostgreSQL runs as. As root,
// keyward never writes, chowns or deletes anything inside it by path: that account (reachable
// through SQL: COPY … TO PROGRAM) could swap a file for a symlink between two steps and have
// root act on the link's target. What must happen inside is done *as* that account; root only
// renames the folder itself, inside DATA_DIR, which is root's alone.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { lstat, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { accountEntry, LEGACY_ACCOUNT, type EmbeddedLog, type RunAs } from './embedded-account.js';

/** Only TCP on 127.0.0.1, with a password: rewritten at every start, so an edit made behind keyward's back does not last. */
export const PG_HBA = '# Written by keyward at every start.\nhost all all 127.0.0.1/32 scram-sha-256\n';

/**
 * Settings given on the command line at every start, where nothing in the cluster's own files
 * (postgresql.conf, ALTER SYSTEM's postgresql.auto.conf, their includes) can override them: the
 * access rules are ours, and nothing it loads or runs comes from outside.
 */
export function forcedSettings(clusterDir: string): string[] {
  const settings = {
    data_directory: clusterDir,
    hba_file: path.join(clusterDir, 'pg_hba.conf'),
    ident_file: path.join(clusterDir, 'pg_ident.conf'),
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    shared_preload_libraries: '',
    session_preload_libraries: '',
    local_preload_libraries: '',
    archive_mode: 'off',
    ssl: 'off',
  };
  return Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
}

/** Runs a short shell script as `as` (its arguments after the script as $1, $2…). */
function runAs(as: RunAs, script: string, args: string[], input?: string) {
  const r = spawnSync('sh', ['-c', script, 'sh', ...args], { uid: as.uid, gid: as.gid, input, encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  if (r.status !== 0) throw new Error(`as ${as.name}: ${script.split(' ')[0]} failed: ${(r.stderr || r.error?.message || '').trim()}`);
}

/** Writes `name` in the cluster folder with `content`, as the account that owns the folder. */
export async function writeClusterFile(clusterDir: string, name: string, content: string, as: RunAs | undefined): Promise<void> {
  const file = path.join(clusterDir, name);
  if (as) return runAs(as, 'umask 077 && cat > "$1.keyward" && mv -f "$1.keyward" "$1"', [file], content);
  const next = `${file}.keyward-${randomBytes(4).toString('hex')}`;
  await writeFile(next, content, { mode: 0o600, flag: 'wx' });
  await rename(next, file);
}

/**
 * A cluster folder without PG_VERSION is what a failed first start leaves. It is removed only
 * when it holds no control file (real data is never deleted for a missing marker file): renamed
 * aside within DATA_DIR, emptied as its owner, the empty folder removed by us.
 */
export async function removeIncompleteCluster(clusterDir: string, as: RunAs | undefined): Promise<void> {
  const st = await lstat(clusterDir).catch(() => null);
  if (!st) return;
  if (!st.isDirectory()) throw new Error(`${clusterDir} is not a directory (a symbolic link?): refusing it`);
  if (spawnSync('test', ['-e', path.join(clusterDir, 'global', 'pg_control')]).status === 0) {
    throw new Error(`${clusterDir} holds a cluster without its PG_VERSION file: not removing it; restore the file or move the folder away`);
  }
  const aside = path.join(path.dirname(clusterDir), `postgres.incomplete-${randomBytes(4).toString('hex')}`);
  await rename(clusterDir, aside);
  if (as) {
    spawnSync('rm', ['-rf', '--one-file-system', '--', `${aside}/`], { uid: as.uid, gid: as.gid, stdio: 'ignore' });
    await rmdir(aside).catch(() => {}); // left behind (and harmless) if its owner could not empty it
  } else {
    await rm(aside, { recursive: true, force: true });
  }
}

/** The real uid a live process runs as (from /proc), or undefined. */
export function processUid(pid: number): number | undefined {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

/**
 * The pid in postmaster.pid, if it is a live postgres of this cluster run by the account it
 * should be (the file is the account's to write: a pid it names is never trusted on its own).
 */
export function postmasterOf(clusterDir: string, as: RunAs | undefined): { pid: number; port: number } | null {
  let lines: string[];
  try {
    lines = readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 1) return null;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const uid = processUid(pid);
    const d = args.indexOf('-D');
    if (!path.basename(args[0] ?? '').startsWith('postgres') || d < 0 || args[d + 1] !== clusterDir) return null;
    if (uid !== (as?.uid ?? process.getuid?.())) return null;
  } catch {
    return null; // gone, or not ours to see
  }
  return { pid, port: Number(lines[3]) };
}

/**
 * The cluster folder must be a real folder of the account PostgreSQL runs as. One the host's
 * `postgres` account owns was made by an older keyward as root: it is taken over, provided no
 * postgres runs on it and nothing in it links elsewhere; its ALTER SYSTEM settings are reset.
 * Anything else is refused.
 */
export async function checkCluster(clusterDir: string, as: RunAs | undefined, log: EmbeddedLog): Promise<void> {
  const st = await lstat(clusterDir);
  if (!st.isDirectory()) throw new Error(`${clusterDir} is not a directory (a symbolic link?): refusing it`);
  const expected = as?.uid ?? process.getuid?.();
  if (st.uid === expected) return;
  const legacy = as ? accountEntry(LEGACY_ACCOUNT) : undefined;
  if (!as || !legacy || st.uid !== legacy.uid) {
    throw new Error(`${clusterDir} belongs to uid ${st.uid}, not to ${as?.name ?? 'the account keyward runs as'}: refusing a cluster another account prepared`);
  }
  if (postmasterOf(clusterDir, { ...as, uid: legacy.uid })) {
    throw new Error(`${clusterDir} is still run by an older keyward (as ${LEGACY_ACCOUNT}): stop that server first, then start this one`);
  }
  const links = spawnSync('find', [clusterDir, '-type', 'l', '-print', '-quit'], { encoding: 'utf8' }).stdout.trim();
  if (links) throw new Error(`${clusterDir} (made by an older keyward as ${LEGACY_ACCOUNT}) links outside itself (${links}): not taking it over; move it away`);
  log.warn({ dir: clusterDir, from: LEGACY_ACCOUNT, to: as.name }, `the embedded database was run as ${LEGACY_ACCOUNT} by an older keyward; it now belongs to ${as.name}`);
  const r = spawnSync('chown', ['-R', '--no-dereference', `${as.uid}:${as.gid}`, clusterDir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`could not hand ${clusterDir} over to ${as.name}: ${r.stderr.trim()}`);
  await writeClusterFile(clusterDir, 'postgresql.auto.conf', `# Reset by keyward when it took this cluster over from ${LEGACY_ACCOUNT}.\n`, as);
}
