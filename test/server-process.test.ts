// The README's start command, with no DATABASE_URL: embedded PostgreSQL, data kept across
// restarts, graceful shutdown however it is asked for.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, portAnswers, ROOT, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';

const running: RunningServer[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function newDataDir() {
  const dir = await mkdtemp(path.join(tmpdir(), 'keyward-start-'));
  dirs.push(dir);
  return dir;
}

async function embeddedClient(dir: string, port: number) {
  const password = (await readFile(path.join(dir, 'postgres-password'), 'utf8')).trim();
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'keyward', password, database: 'keyward' });
  await client.connect();
  return client;
}

async function launch(dataDir: string, port: number, env: Record<string, string> = {}) {
  const server = startServer({ DATA_DIR: dataDir, PORT: String(port), ...env });
  running.push(server);
  const toHealthy = await waitForHealthy(port, server);
  const dbLine = server.logs.find((l) => l.database === 'embedded');
  expect(dbLine, server.output()).toBeDefined();
  expect(dbLine!.msg).toMatch(/using embedded PostgreSQL at 127\.0\.0\.1:\d+/);
  expect(dbLine!.port).not.toBe(5432);
  return { server, toHealthy, pgPort: dbLine!.port as number };
}

async function expectCleanExit(server: RunningServer, dataDir: string, port: number, pgPort: number) {
  const { code } = await server.exited;
  expect(code, server.output()).toBe(0);
  expect(server.logs.some((l) => l.msg === 'embedded PostgreSQL stopped')).toBe(true);
  // Nothing left listening: neither the API nor the embedded database.
  expect(await portAnswers(port)).toBe(false);
  expect(await portAnswers(pgPort)).toBe(false);
  expect(await stat(path.join(dataDir, 'postgres', 'postmaster.pid')).catch(() => null)).toBeNull();
  // The generated database password never reaches the output.
  const password = (await readFile(path.join(dataDir, 'postgres-password'), 'utf8')).trim();
  expect(server.output()).not.toContain(password);
}

describe('npm start with no DATABASE_URL', () => {
  it('starts the embedded database, keeps data across a restart, and exits 0 on SIGTERM', async () => {
    const dataDir = await newDataDir();
    const port = await freePort();

    const first = await launch(dataDir, port);
    const c1 = await embeddedClient(dataDir, first.pgPort);
    await c1.query('CREATE TABLE restart_probe (note text)');
    await c1.query("INSERT INTO restart_probe VALUES ('written in run 1')");
    await c1.end();
    first.server.child.kill('SIGTERM');
    await expectCleanExit(first.server, dataDir, port, first.pgPort);
    expect((await stat(path.join(dataDir, 'postgres-password'))).mode & 0o077).toBe(0);

    const second = await launch(dataDir, port);
    const c2 = await embeddedClient(dataDir, second.pgPort);
    const { rows } = await c2.query('SELECT note FROM restart_probe');
    const migrations = await c2.query('SELECT count(*)::int AS n FROM _prisma_migrations');
    await c2.end();
    expect(rows).toEqual([{ note: 'written in run 1' }]);
    expect(migrations.rows[0].n).toBeGreaterThan(0);
    expect(second.server.output()).not.toMatch(/initialising embedded PostgreSQL/);
    expect(second.server.output()).toMatch(/database schema is up to date/);
    second.server.child.kill('SIGTERM');
    await expectCleanExit(second.server, dataDir, port, second.pgPort);

    console.log(`[timing] embedded default: first start ${first.toHealthy} ms to healthy, second start ${second.toHealthy} ms`);
  });

  it('after a kill -9, the next start stops the orphaned database and carries on with the same data', async () => {
    const dataDir = await newDataDir();
    const port = await freePort();
    const crashed = await launch(dataDir, port);
    const c = await embeddedClient(dataDir, crashed.pgPort);
    await c.query("CREATE TABLE probe AS SELECT 'before the crash'::text AS note");
    await c.end();
    const nodePid = crashed.server.logs.find((l) => l.msg?.startsWith('Server listening'))!.pid as number;
    process.kill(nodePid, 'SIGKILL');
    await crashed.server.exited;
    expect(await portAnswers(crashed.pgPort)).toBe(true); // the orphan still holds the data directory

    const next = await launch(dataDir, port);
    expect(next.server.output()).toMatch(/still running; stopping it/);
    expect(await portAnswers(crashed.pgPort)).toBe(false);
    const c2 = await embeddedClient(dataDir, next.pgPort);
    expect((await c2.query('SELECT note FROM probe')).rows).toEqual([{ note: 'before the crash' }]);
    await c2.end();
    next.server.child.kill('SIGTERM');
    await expectCleanExit(next.server, dataDir, port, next.pgPort);
  });

  it('a second server on the same DATA_DIR refuses to start and leaves the first one alone; db:migrate attaches', async () => {
    const dataDir = await newDataDir();
    const port = await freePort();
    const first = await launch(dataDir, port);

    const secondPort = await freePort();
    const second = startServer({ DATA_DIR: dataDir, PORT: String(secondPort) });
    running.push(second);
    const { code } = await second.exited;
    expect(code).toBe(1);
    expect(second.output()).toMatch(/is in use by another keyward process/);

    const migrate = spawnSync('npm', ['run', '-s', 'db:migrate'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', DATA_DIR: dataDir, LOG_FORMAT: 'json' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(migrate.status, migrate.stdout + migrate.stderr).toBe(0);
    expect(migrate.stdout).toMatch(/using the embedded PostgreSQL that pid \d+ runs/);

    const health = await fetch(`http://127.0.0.1:${port}/api/v1/health`);
    expect(health.status).toBe(200);
    first.server.child.kill('SIGTERM');
    await expectCleanExit(first.server, dataDir, port, first.pgPort);
  });

  it('two Ctrl-Cs still shut down gracefully: the in-flight request completes, exit 0', async () => {
    const dataDir = await newDataDir();
    const port = await freePort();
    const infra = `jim_ak_${'ab'.repeat(32)}`;
    const { server, pgPort } = await launch(dataDir, port, { JIM_INFRASTRUCTURE_API_KEY: infra });
    // A request whose body is still arriving when the signals come.
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => sock.once('connect', r));
    const body = '{"name":"slow"}';
    sock.write(
      `POST /api/v1/apikeys HTTP/1.1\r\nHost: x\r\nX-API-Key: ${infra}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n{"na`,
    );
    let reply = '';
    sock.on('data', (d) => (reply += d));
    await new Promise((r) => setTimeout(r, 200));
    server.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 100));
    server.child.kill('SIGINT');
    const signalled = Date.now();
    await new Promise((r) => setTimeout(r, 200));
    sock.write(body.slice(4));
    await new Promise((r) => sock.once('close', r));
    // The request finished with its real answer, not a reset, and the server hung up after it.
    expect(reply).toMatch(/^HTTP\/1\.1 201 /);
    expect(reply).toMatch(/connection: close/i);
    expect(reply).toMatch(/"name":"slow"/);
    expect(server.logs.some((l) => l.msg === 'already shutting down')).toBe(true);
    await expectCleanExit(server, dataDir, port, pgPort);
    // Well inside the 10 s deadline: nothing waited for a keep-alive to expire.
    expect(Date.now() - signalled).toBeLessThan(5_000);
    expect(server.logs.some((l) => l.msg?.startsWith('shutdown deadline reached'))).toBe(false);
  });

  it('a request that never finishes does not hold shutdown past SHUTDOWN_TIMEOUT_MS', async () => {
    const dataDir = await newDataDir();
    const port = await freePort();
    const { server, pgPort } = await launch(dataDir, port, { SHUTDOWN_TIMEOUT_MS: '1000' });
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => sock.once('connect', r));
    sock.on('error', () => {});
    sock.write('POST /api/v1/apikeys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na');
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    server.child.kill('SIGTERM');
    await expectCleanExit(server, dataDir, port, pgPort);
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(server.logs.some((l) => l.msg === 'shutdown deadline reached; closing the remaining connections')).toBe(true);
    sock.destroy();
  });
});
