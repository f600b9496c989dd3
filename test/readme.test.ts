// The README's shell blocks are run, in order, in one bash session against a fresh server, so
// the quickstart, the curl examples and the CLI examples cannot drift from what the server does.
// A block is skipped only when the line before it says `<!-- readme-test: skip (reason) -->`.
// Every curl fails on an HTTP error (a wrapper adds --fail-with-body) and the session runs with
// `set -euo pipefail`, so a documented command that stops working fails the test.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase, TEST_ENV } from './helpers/app.js';
import { sql } from './helpers/keys.js';
import { freePort, ROOT, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';

interface Block {
  line: number;
  code: string;
  skip: string | null;
}

/** Every ```sh block (indented ones too), with the skip reason written above it, if any. */
export function shellBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```sh\s*$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1];
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && lines[j].trim() !== '```'; j++) body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const skip = /<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->/.exec(lines[k] ?? '')?.[1] ?? null;
    blocks.push({ line: i + 1, code: body.join('\n'), skip });
    i = j;
  }
  return blocks;
}

const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const blocks = shellBlocks(README);
const runnable = blocks.filter((b) => b.skip === null);

let server: RunningServer | undefined;
afterAll(async () => {
  server?.child.kill('SIGTERM');
  await server?.exited;
});

function bash(script: string, env: Record<string, string>, timeoutMs: number) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn('bash', ['-c', script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('the README', () => {
  it('marks every block it does not run, and runs the quickstart, curl and CLI blocks', () => {
    expect(blocks.length).toBeGreaterThan(runnable.length);
    const all = runnable.map((b) => b.code).join('\n');
    expect(all).toContain('ADMIN_KEY=$(npm run --silent keys:create --'); // the quickstart
    expect(all).toContain('"$B/apikeys?name=ci-*"'); // the curl examples
    expect(all).toContain('npx keyward roles list'); // the command line
    for (const b of blocks.filter((x) => x.skip)) expect(b.skip!.length, `block at line ${b.line}`).toBeGreaterThan(10);
    // No fixed dates that will pass: expiries in runnable examples are relative.
    expect(all).not.toMatch(/20\d\d-\d\d-\d\dT/);
  });

  it('its shell blocks run, in order, against a fresh server', { timeout: 240_000 }, async () => {
    const dbUrl = await freshDatabase();
    const port = await freePort();
    const cheap = { NODE_ENV: TEST_ENV.NODE_ENV, ARGON2_MEMORY_KIB: TEST_ENV.ARGON2_MEMORY_KIB, ARGON2_TIME_COST: TEST_ENV.ARGON2_TIME_COST };
    // The quickstart's server, with metrics on so the Metrics section's block can run too.
    server = startServer({ ...cheap, DATABASE_URL: dbUrl, PORT: String(port), METRICS_ENABLED: 'true', LOG_LEVEL: 'warn', WEBHOOK_SECRET_KEY: 'ab'.repeat(32) });
    await waitForHealthy(port, server);

    const script = [
      'set -euo pipefail',
      'curl() { command curl --fail-with-body --show-error "$@"; }',
      ...runnable.map((b) => `echo "== README line ${b.line}" >&2\n${b.code.replaceAll('127.0.0.1:3000', `127.0.0.1:${port}`)}`),
      // What the blocks left behind: a key, not npm's banner; an id.
      '[[ "$ADMIN_KEY" =~ ^jim_ak_[0-9a-f]{64}$ ]] || { echo "ADMIN_KEY holds more than the key: $(printf %q "${ADMIN_KEY:0:40}")" >&2; exit 1; }',
      '[[ "$ID" =~ ^[0-9a-f-]{36}$ ]] || { echo "ID is not an id" >&2; exit 1; }',
      'echo "== README done" >&2',
    ].join('\n');
    // keys:create in the blocks reaches the server's database as it would through ./data.
    const env = { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', DATABASE_URL: dbUrl, ...cheap, LOG_LEVEL: 'warn' };
    const r = await bash(script, env, 200_000);
    expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    expect(r.stderr).toContain('== README done');

    // What they did, as the database saw it.
    const keys = await sql<{ name: string; is_enabled: boolean; roles: number[] }>(
      dbUrl,
      `SELECT k.name, k.is_enabled, coalesce(array_agg(r.role_id ORDER BY r.role_id) FILTER (WHERE r.role_id IS NOT NULL), '{}') AS roles
         FROM api_keys k LEFT JOIN api_key_roles r ON r.api_key_id = k.id GROUP BY k.id ORDER BY k.name`,
    );
    expect(keys).toEqual([
      { name: 'admin', is_enabled: true, roles: [1] },
      { name: 'billing-sync', is_enabled: true, roles: [3] },
      { name: 'ci-pipeline', is_enabled: false, roles: [3] },
      { name: 'ci-release', is_enabled: true, roles: [3] },
      { name: 'orders-api', is_enabled: true, roles: [5] },
      { name: 'prometheus', is_enabled: true, roles: [4] },
      { name: 'shop', is_enabled: true, roles: [100] },
    ]);
    expect(await sql(dbUrl, 'SELECT id, name, permissions FROM roles WHERE id >= 100')).toEqual([{ id: 100, name: 'orders-reader', permissions: ['orders.read'] }]);
    const deletes = await sql<{ change_reason: string | null }>(dbUrl, "SELECT change_reason FROM api_key_changes WHERE operation = 'delete' ORDER BY changed_at");
    expect(deletes.map((d) => d.change_reason)).toEqual(['rotated', null]);
    // The rotations (curl, then the CLI) and the allowlist and limit the curl block set.
    const rotations = await sql<{ change_reason: string | null }>(dbUrl, "SELECT change_reason FROM api_key_changes WHERE operation = 'rotate' ORDER BY changed_at");
    expect(rotations.map((d) => d.change_reason)).toEqual(['CHG-2: yearly rotation', 'CHG-2']);
    expect(await sql(dbUrl, "SELECT allowed_cidrs, rate_limit_max, rate_limit_window_seconds, previous_key_expires_at > now() AS in_grace FROM api_keys WHERE name = 'billing-sync'")).toEqual([
      { allowed_cidrs: ['10.0.0.0/8', '2001:db8::/32'], rate_limit_max: 100, rate_limit_window_seconds: 60, in_grace: true },
    ]);
    // The webhook block's subscription, and its test ping (failed: hooks.example.com does not resolve here).
    expect(await sql(dbUrl, 'SELECT url, event_types, description FROM webhooks')).toEqual([
      { url: 'https://hooks.example.com/keyward', event_types: ['apikey.expiring', 'apikey.revoked', 'apikey.disabled_idle'], description: 'key owners' },
    ]);
    expect(await sql(dbUrl, "SELECT d.status, e.type FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id")).toEqual([{ status: 'failed', type: 'ping' }]);
  });
});
