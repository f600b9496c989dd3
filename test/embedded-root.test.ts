// The embedded default as root (as containers, CI and these machines run it) and not root: it
// starts wherever the checkout is, runs PostgreSQL as an OS account of its own, and trusts no
// folder or file another account prepared.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { accountEntry, DB_ACCOUNT } from '../src/db/embedded-account.js';
import { relocatedDir } from '../src/db/data-dir.js';
import { TEST_ENV } from './helpers/app.js';
import { freePort, ROOT, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';

const isRoot = userInfo().uid === 0;
if (!isRoot) console.log('[embedded as root] not running as root: the root-only cases are skipped (CI runs them as root)');

const cheap = { NODE_ENV: TEST_ENV.NODE_ENV, ARGON2_MEMORY_KIB: TEST_ENV.ARGON2_MEMORY_KIB, ARGON2_TIME_COST: TEST_ENV.ARGON2_TIME_COST };
const running: RunningServer[] = [];
const cleanup: string[] = [];
afterAll(async () => {
  for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});

/** A private (0700) folder, as a home folder is. */
async function privateDir(prefix: string) {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  await chmod(dir, 0o700);
  cleanup.push(dir);
  return dir;
}

/**
 * A fresh clone of this working tree inside `parent`: its files as git knows them, the installed
 * dependencies (hard links where one filesystem allows, as fast as a copy gets) and the
 * generated Prisma client (made by npm's postinstall, not committed).
 */
function cloneInto(parent: string): string {
  const dir = path.join(parent, 'keyward');
  const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
    .stdout.split('\0')
    .filter((f) => f && existsSync(path.join(ROOT, f)));
  spawnSync('mkdir', ['-p', dir]);
  const tar = spawnSync('bash', ['-c', `tar --null -T - -cf - | tar -xf - -C ${JSON.stringify(dir)}`], { cwd: ROOT, input: files.join('\0') });
  expect(tar.status, String(tar.stderr)).toBe(0);
  const linked = spawnSync('cp', ['-al', path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules')]);
  if (linked.status !== 0) spawnSync('ln', ['-s', path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules')]);
  expect(spawnSync('cp', ['-a', path.join(ROOT, 'src/generated'), path.join(dir, 'src/generated')]).status).toBe(0);
  return dir;
}

function pgProcessUid(clusterDir: string): number {
  const pid = Number(readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

async function launch(env: Record<string, string>, cwd?: string) {
  const port = await freePort();
  const server = startServer({ ...cheap, PORT: String(port), ...env }, { cwd });
  running.push(server);
  await waitForHealthy(port, server);
  return { server, port };
}

async function stop(server: RunningServer) {
  server.child.kill('SIGTERM');
  expect((await server.exited).code, server.output()).toBe(0);
}

/** The real server's start, to its exit: for configurations that must refuse to start. */
function refusedStart(env: Record<string, string>) {
  return new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH!, HOME: '/tmp', LOG_FORMAT: 'json', ...cheap, PORT: '0', ...env },
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Starts a server and stops it again, whether or not it came up: for cases where only a side effect matters. */
async function tryStart(env: Record<string, string>) {
  const port = await freePort();
  const server = startServer({ ...cheap, PORT: String(port), ...env });
  running.push(server);
  await Promise.race([waitForHealthy(port, server, 30_000).catch(() => {}), server.exited]);
  server.child.kill('SIGTERM');
  await server.exited;
}

describe.runIf(isRoot)('the embedded default as root', () => {
  it('npm start from a fresh clone inside a 0700 folder: the database moves to /var/lib/keyward, runs as its own account, keeps its data', async () => {
    const home = await privateDir('keyward-home-');
    const checkout = cloneInto(home);
    const moved = relocatedDir(path.join(checkout, 'data'));
    cleanup.push(moved);

    const first = await launch({}, checkout);
    const line = first.server.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('DATA_DIR is not set'));
    expect(line?.msg, first.server.output()).toBe(
      `DATA_DIR is not set and ${path.join(checkout, 'data')} is in a folder the database account ${DB_ACCOUNT} cannot enter: keeping the embedded database in ${moved}`,
    );
    expect(existsSync(path.join(checkout, 'data'))).toBe(false);

    // Its own account: no login shell, no home; never the host's postgres account.
    const account = accountEntry(DB_ACCOUNT)!;
    expect(account).toMatchObject({ shell: '/usr/sbin/nologin', home: '/nonexistent' });
    expect(account.uid).not.toBe(accountEntry('postgres')?.uid ?? -1);
    const cluster = path.join(moved, 'postgres');
    expect(pgProcessUid(cluster)).toBe(account.uid);
    const st = await lstat(cluster);
    expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({ uid: account.uid, mode: 0o700 });
    const pw = await lstat(path.join(moved, 'postgres-password'));
    expect({ uid: pw.uid, mode: pw.mode & 0o777 }).toEqual({ uid: 0, mode: 0o600 });
    const root = await lstat('/var/lib/keyward');
    expect({ uid: root.uid, writableByOthers: (root.mode & 0o022) !== 0 }).toEqual({ uid: 0, writableByOthers: false });

    // The quickstart's next step, in that checkout: the first key, into the running database.
    const created = spawnSync('npm', ['run', '--silent', 'keys:create', '--', '--name', 'admin', '--role-ids', '1'], {
      cwd: checkout,
      env: { PATH: process.env.PATH!, HOME: '/tmp', ...cheap },
      encoding: 'utf8',
    });
    expect(created.status, created.stderr).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^jim_ak_[0-9a-f]{64}$/);
    const me = (port: number) => fetch(`http://127.0.0.1:${port}/api/v1/userinfo`, { headers: { 'x-api-key': key } });
    expect((await me(first.port)).status).toBe(200);
    await stop(first.server);

    // A restart finds the same place and the same data, even once the home folder is enterable:
    // where the database lives does not depend on a folder's mode today.
    await chmod(home, 0o711);
    const second = await launch({}, checkout);
    expect(second.server.logs.some((l) => l.dir === moved && /using the embedded database kept for this checkout/.test(l.msg))).toBe(true);
    expect(existsSync(path.join(checkout, 'data', 'postgres'))).toBe(false);
    expect((await me(second.port)).status).toBe(200);
    // Nothing in the cluster belongs to root: keyward writes there only as its account.
    expect(spawnSync('find', [cluster, '-uid', '0'], { encoding: 'utf8' }).stdout.trim()).toBe('');
    await stop(second.server);
  }, 240_000);

  it('an explicit DATA_DIR the database account cannot enter is an error that says so', async () => {
    const home = await privateDir('keyward-home-');
    const r = await refusedStart({ DATA_DIR: path.join(home, 'data') });
    expect(r.code).toBe(1);
    expect(r.output).toContain(`the embedded PostgreSQL runs as the OS account ${DB_ACCOUNT}, which cannot enter DATA_DIR ${path.join(home, 'data')}`);
    expect(existsSync(path.join(home, 'data', 'postgres'))).toBe(false);
  });

  it('refuses a DATA_DIR another account prepared (planted password, owner file as a symlink), and writes through nothing', async () => {
    const victim = path.join(await privateDir('keyward-victim-'), 'root-owned');
    await writeFile(victim, 'unchanged\n', { mode: 0o644 });
    const nobody = accountEntry('nobody')!;
    const planted = await mkdtemp(path.join(tmpdir(), 'keyward-planted-'));
    cleanup.push(planted);
    await writeFile(path.join(planted, 'postgres-password'), 'known-to-the-attacker\n', { mode: 0o600 });
    await symlink(victim, path.join(planted, 'postgres.owner'));
    for (const f of [planted, path.join(planted, 'postgres-password')]) await chown(f, nobody.uid, nobody.gid);
    await chmod(planted, 0o755);
    const r = await refusedStart({ DATA_DIR: planted });
    expect(r.code).toBe(1);
    expect(r.output).toContain(`DATA_DIR ${planted} belongs to uid ${nobody.uid}, not to the account keyward runs as (uid 0): refusing a folder another account prepared`);
    expect(await readFile(victim, 'utf8')).toBe('unchanged\n');
    expect(existsSync(path.join(planted, 'postgres'))).toBe(false);
  });

  it.each([
    ['writable by others', async (dir: string) => chmod(dir, 0o777), 'is writable by other users (mode 0777)'],
    ['a password file others can read', async (dir: string) => writeFile(path.join(dir, 'postgres-password'), 'pw\n', { mode: 0o644 }), 'is readable or writable by other users (mode 0644)'],
    ['a password file that is a symlink', async (dir: string) => symlink('/etc/hostname', path.join(dir, 'postgres-password')), 'postgres-password is a symbolic link: refusing it'],
  ])('refuses a DATA_DIR of its own with %s', async (_label, prepare, message) => {
    const dir = await privateDir('keyward-own-');
    await prepare(dir);
    const r = await refusedStart({ DATA_DIR: dir });
    expect(r.code).toBe(1);
    expect(r.output).toContain(message);
    expect(existsSync(path.join(dir, 'postgres', 'postmaster.pid'))).toBe(false);
    expect(readFileSync('/etc/hostname', 'utf8').length).toBeGreaterThan(0);
  });

  it('a DATA_DIR that is a symlink another account planted is refused; one writable by a group of ours is accepted', async () => {
    const nobody = accountEntry('nobody')!;
    const linkParent = await privateDir('keyward-link-');
    await chmod(linkParent, 0o755);
    const link = path.join(linkParent, 'data');
    await symlink(await privateDir('keyward-target-'), link);
    spawnSync('chown', ['-h', `${nobody.uid}:${nobody.gid}`, link]);
    const r = await refusedStart({ DATA_DIR: link });
    expect(r.code).toBe(1);
    expect(r.output).toContain(`DATA_DIR ${link} is a symbolic link that belongs to uid ${nobody.uid}: refusing a link another account prepared`);

    const shared = await privateDir('keyward-group-');
    await chmod(shared, 0o770); // group root: a group of ours
    const { server } = await launch({ DATA_DIR: shared });
    await stop(server);
  }, 120_000);

  it('rewrites pg_hba.conf at every start and forces hba_file (an edit or ALTER SYSTEM behind its back does not last), and takes over a cluster an older keyward ran as postgres', async () => {
    const dir = await privateDir('keyward-hba-');
    const first = await launch({ DATA_DIR: dir });
    await stop(first.server);
    const hba = path.join(dir, 'postgres', 'pg_hba.conf');
    await writeFile(hba, 'host all all 127.0.0.1/32 trust\n');
    // What ALTER SYSTEM SET hba_file would leave: rules of someone else's choosing.
    const evil = path.join(dir, 'postgres', 'evil_hba.conf');
    await writeFile(evil, 'host all all 127.0.0.1/32 trust\n');
    await writeFile(path.join(dir, 'postgres', 'postgresql.auto.conf'), `hba_file = '${evil}'\n`);
    const legacy = accountEntry('postgres');
    if (legacy) spawnSync('chown', ['-R', `${legacy.uid}:${legacy.gid}`, path.join(dir, 'postgres')]);

    const second = await launch({ DATA_DIR: dir });
    expect(await readFile(hba, 'utf8')).toBe('# Written by keyward at every start.\nhost all all 127.0.0.1/32 scram-sha-256\n');
    expect((await lstat(path.join(dir, 'postgres'))).uid).toBe(accountEntry(DB_ACCOUNT)!.uid);
    if (legacy) {
      expect(second.server.logs.some((l) => l.from === 'postgres' && l.to === DB_ACCOUNT)).toBe(true);
      expect(await readFile(path.join(dir, 'postgres', 'postgresql.auto.conf'), 'utf8')).toMatch(/^# Reset by keyward/); // ALTER SYSTEM settings dropped
    }
    const pgPort = second.server.logs.find((l) => l.database === 'embedded')!.port as number;
    const intruder = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'keyward', password: 'guess', database: 'keyward' });
    await expect(intruder.connect()).rejects.toThrow(/password authentication failed/);
    await stop(second.server);
  }, 120_000);
});

describe.runIf(isRoot)('root never acts on what the database account controls', () => {
  it('a symlink the account planted where keyward writes pg_hba.conf is not written through as root', async () => {
    const dir = await privateDir('keyward-race-');
    const first = await launch({ DATA_DIR: dir });
    await stop(first.server);
    const victim = path.join(await privateDir('keyward-victim-'), 'root-owned');
    await writeFile(victim, 'unchanged\n', { mode: 0o600 });
    const account = accountEntry(DB_ACCOUNT)!;
    const cluster = path.join(dir, 'postgres');
    const planted = path.join(cluster, 'pg_hba.conf.keyward');
    await symlink(victim, planted);
    spawnSync('chown', ['-h', `${account.uid}:${account.gid}`, planted]);
    // And, as that account, swap every file keyward makes there for a link to the victim, as fast as it can.
    const RACER = [
      'import os, sys, time',
      'd, victim, end = sys.argv[1], sys.argv[2], time.time() + 120',
      'while time.time() < end:',
      '    try:',
      '        for e in os.scandir(d):',
      "            if e.name.startswith('pg_hba.conf.keyward') and not e.name.endswith('.x') and e.is_file(follow_symlinks=False):",
      '                try:',
      "                    os.rename(e.path, e.path + '.x'); os.symlink(victim, e.path)",
      '                except OSError:',
      '                    pass',
      '    except OSError:',
      '        pass',
    ].join('\n');
    const racer = spawn('python3', ['-c', RACER, cluster, victim], { uid: account.uid, gid: account.gid, stdio: 'ignore' });
    try {
      await tryStart({ DATA_DIR: dir }); // may or may not start: what matters is the victim
      await tryStart({ DATA_DIR: dir });
    } finally {
      racer.kill('SIGKILL');
    }
    expect(await readFile(victim, 'utf8')).toBe('unchanged\n');
    const st = await lstat(victim);
    expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({ uid: 0, mode: 0o600 });
  }, 120_000);

  it('a postmaster.pid naming some other process does not get it signalled', async () => {
    const dir = await privateDir('keyward-pid-');
    const first = await launch({ DATA_DIR: dir });
    await stop(first.server);
    // Named like a postgres, as anything can be: only a postgres of this cluster, run by its account, is ever stopped.
    const bystander = spawn('bash', ['-c', 'exec -a postgres sleep 600']);
    try {
      await writeFile(path.join(dir, 'postgres', 'postmaster.pid'), `${bystander.pid}\n${path.join(dir, 'postgres')}\n0\n5432\n`);
      // Whether PostgreSQL then starts or refuses the lock file is its business; the bystander must live.
      await tryStart({ DATA_DIR: dir });
      expect(bystander.exitCode).toBeNull();
      expect(bystander.signalCode).toBeNull();
    } finally {
      bystander.kill('SIGKILL');
    }
  }, 120_000);

  it('a cluster folder without PG_VERSION but with data is refused, not deleted', async () => {
    const dir = await privateDir('keyward-marker-');
    const first = await launch({ DATA_DIR: dir });
    await stop(first.server);
    await rm(path.join(dir, 'postgres', 'PG_VERSION'));
    const r = await refusedStart({ DATA_DIR: dir });
    expect(r.code).toBe(1);
    expect(r.output).toContain('holds a cluster without its PG_VERSION file: not removing it');
    expect(existsSync(path.join(dir, 'postgres', 'global', 'pg_control'))).toBe(true);
  }, 120_000);
});

describe('two starts on one DATA_DIR at once', () => {
  it('one starts, the other is told who has it, and a later command attaches without stopping it', async () => {
    const dir = await privateDir('keyward-race2-');
    const ports = [await freePort(), await freePort()];
    const servers = ports.map((port) => startServer({ ...cheap, PORT: String(port), DATA_DIR: dir }));
    running.push(...servers);
    const outcomes = await Promise.all(
      servers.map((s, i) =>
        Promise.race([waitForHealthy(ports[i], s, 90_000).then(() => 'up' as const), s.exited.then(() => 'exited' as const)]),
      ),
    );
    expect([...outcomes].sort()).toEqual(['exited', 'up']);
    const loser = servers[outcomes.indexOf('exited')];
    expect(loser.output()).toMatch(/is in use by another keyward process \(pid \d+\)/);
    const winner = servers[outcomes.indexOf('up')];
    const winnerPort = ports[outcomes.indexOf('up')];
    expect(existsSync(path.join(dir, 'postgres.owner'))).toBe(true);
    const attached = spawnSync('npm', ['run', '--silent', 'db:migrate'], { cwd: ROOT, env: { PATH: process.env.PATH!, HOME: '/tmp', ...cheap, DATA_DIR: dir }, encoding: 'utf8' });
    expect(attached.status, attached.stderr).toBe(0);
    expect(attached.stdout + attached.stderr).not.toMatch(/still running; stopping it/);
    expect((await fetch(`http://127.0.0.1:${winnerPort}/api/v1/health`)).status).toBe(200);
    await stop(winner);
  }, 180_000);
});

// Not root: the same server as an unprivileged account, in a DATA_DIR of its own.
const nobody = accountEntry('nobody');
const nobodyCanRead = isRoot && nobody !== undefined && spawnSync('test', ['-r', path.join(ROOT, 'src/server.ts')], { uid: nobody.uid, gid: nobody.gid }).status === 0;
if (isRoot && !nobodyCanRead) console.log(`[embedded not as root] nobody cannot read ${ROOT} (a private folder): the unprivileged start is skipped`);

describe.runIf(nobodyCanRead)('the embedded default not as root', () => {
  it('starts as an unprivileged account in a DATA_DIR it owns, PostgreSQL running as that account', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'keyward-user-'));
    cleanup.push(dir);
    await mkdir(path.join(dir, 'home'));
    await chown(dir, nobody!.uid, nobody!.gid);
    await chown(path.join(dir, 'home'), nobody!.uid, nobody!.gid);
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      uid: nobody!.uid,
      gid: nobody!.gid,
      env: { PATH: process.env.PATH!, HOME: path.join(dir, 'home'), LOG_FORMAT: 'json', ...cheap, PORT: String(port), DATA_DIR: path.join(dir, 'data') },
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      let healthy = false;
      for (let i = 0; i < 600 && !healthy && child.exitCode === null; i++) {
        healthy = await fetch(`http://127.0.0.1:${port}/api/v1/health`).then((r) => r.status === 200, () => false);
        if (!healthy) await new Promise((r) => setTimeout(r, 100));
      }
      expect(healthy, output).toBe(true);
      expect(pgProcessUid(path.join(dir, 'data', 'postgres'))).toBe(nobody!.uid);
      expect((await lstat(path.join(dir, 'data', 'postgres-password'))).uid).toBe(nobody!.uid);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, output).toBe(0);
  }, 120_000);
});
