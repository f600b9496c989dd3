// Which PostgreSQL the tests use: TEST_DATABASE_URL, else testcontainers when a Docker engine
// answers, else an embedded PostgreSQL in a temporary folder.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';

export interface PostgresSource {
  kind: 'TEST_DATABASE_URL' | 'testcontainers' | 'embedded';
  /** A URL of a database the harness may CREATE DATABASE from. */
  adminUrl: string;
  stop(): Promise<void>;
}

const quietLog = { info() {}, warn() {}, debug() {} };

async function dockerAnswers(timeoutMs: number): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    // The check can hang forever on an endpoint that accepts but never answers: race it.
    const ok = await Promise.race([getContainerRuntimeClient().then(() => true, () => false), timeout]);
    clearTimeout(timer);
    return ok;
  } catch {
    return false;
  }
}

/** A PostgreSQL cluster owned by the caller alone (e.g. to stop it in a test). */
export async function startOwnedEmbedded() {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'keyward-test-pg-'));
  let db = await startEmbeddedPostgres(dataDir, quietLog);
  const port = db.port;
  return {
    url: db.url,
    dataDir,
    /** Stops the server but keeps its data, so `start()` brings it back on the same port. */
    pause: () => db.stop(),
    /** SIGSTOP (or SIGCONT) the postmaster and every backend: a database that stops answering. */
    freeze: (signal: 'SIGSTOP' | 'SIGCONT' = 'SIGSTOP') => {
      const pid = Number(readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
      const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
      for (const p of [pid, ...children]) process.kill(p, signal);
    },
    start: async () => {
      db = await startEmbeddedPostgres(dataDir, quietLog, { port });
    },
    stop: async () => {
      await db.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function choosePostgres(env = process.env): Promise<PostgresSource> {
  if (env.TEST_DATABASE_URL) {
    return { kind: 'TEST_DATABASE_URL', adminUrl: env.TEST_DATABASE_URL, stop: async () => {} };
  }
  if (await dockerAnswers(2_000)) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:17-alpine').start();
    return { kind: 'testcontainers', adminUrl: container.getConnectionUri(), stop: async () => void (await container.stop()) };
  }
  const owned = await startOwnedEmbedded();
  return { kind: 'embedded', adminUrl: owned.url, stop: owned.stop };
}
