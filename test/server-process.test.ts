// The README's start command, with no DATABASE_URL: embedded PostgreSQL, data kept across restarts.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, portAnswers, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';

let dataDir: string;
const running: RunningServer[] = [];
afterAll(async () => {
  for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function embeddedClient(dir: string, port: number) {
  const password = (await readFile(path.join(dir, 'postgres-password'), 'utf8')).trim();
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'keyward', password, database: 'keyward' });
  await client.connect();
  return client;
}

async function runOnce(port: number, work: (pgPort: number) => Promise<void>) {
  const t0 = Date.now();
  const server = startServer({ DATA_DIR: dataDir, PORT: String(port) });
  running.push(server);
  const toHealthy = await waitForHealthy(port, server);
  const dbLine = server.logs.find((l) => l.database === 'embedded');
  expect(dbLine, server.output()).toBeDefined();
  expect(dbLine!.msg).toMatch(/using embedded PostgreSQL at 127\.0\.0\.1:\d+/);
  const pgPort = dbLine!.port as number;
  expect(pgPort).not.toBe(5432);
  await work(pgPort);

  server.child.kill('SIGTERM');
  const { code } = await server.exited;
  expect(code, server.output()).toBe(0);
  expect(server.logs.some((l) => l.msg === 'embedded PostgreSQL stopped')).toBe(true);
  // Nothing left listening: neither the API nor the embedded database.
  expect(await portAnswers(port)).toBe(false);
  expect(await portAnswers(pgPort)).toBe(false);
  expect(await stat(path.join(dataDir, 'postgres', 'postmaster.pid')).catch(() => null)).toBeNull();
  return { toHealthy, total: Date.now() - t0, output: server.output() };
}

describe('npm start with no DATABASE_URL', () => {
  it('starts the embedded database, keeps data across a restart, and exits 0 on SIGTERM', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'keyward-start-'));
    const port = await freePort();

    const first = await runOnce(port, async (pgPort) => {
      const c = await embeddedClient(dataDir, pgPort);
      await c.query('CREATE TABLE restart_probe (note text)');
      await c.query("INSERT INTO restart_probe VALUES ('written in run 1')");
      await c.end();
    });
    const pwFile = await stat(path.join(dataDir, 'postgres-password'));
    expect(pwFile.mode & 0o077).toBe(0); // readable by its owner only

    const second = await runOnce(port, async (pgPort) => {
      const c = await embeddedClient(dataDir, pgPort);
      const { rows } = await c.query('SELECT note FROM restart_probe');
      const migrations = await c.query('SELECT count(*)::int AS n FROM _prisma_migrations');
      await c.end();
      expect(rows).toEqual([{ note: 'written in run 1' }]);
      expect(migrations.rows[0].n).toBeGreaterThan(0);
    });
    expect(second.output).not.toMatch(/initialising embedded PostgreSQL/);
    expect(second.output).toMatch(/database schema is up to date/);

    console.log(
      `[timing] embedded default: first start ${first.toHealthy} ms to healthy, second start ${second.toHealthy} ms`,
    );
  });

  it('after a kill -9, the next start stops the orphaned database and carries on with the same data', async () => {
    const port = await freePort();
    const crashed = startServer({ DATA_DIR: dataDir, PORT: String(port) });
    running.push(crashed);
    await waitForHealthy(port, crashed);
    const nodePid = crashed.logs.find((l) => l.msg?.startsWith('Server listening'))!.pid as number;
    const pgPort = crashed.logs.find((l) => l.database === 'embedded')!.port as number;
    process.kill(nodePid, 'SIGKILL');
    await crashed.exited;
    expect(await portAnswers(pgPort)).toBe(true); // the orphan still holds the data directory

    await runOnce(port, async (newPgPort) => {
      const c = await embeddedClient(dataDir, newPgPort);
      const { rows } = await c.query('SELECT note FROM restart_probe');
      await c.end();
      expect(rows).toEqual([{ note: 'written in run 1' }]);
    }).then(({ output }) => expect(output).toMatch(/still running; stopping it/));
    expect(await portAnswers(pgPort)).toBe(false);
  });
});
