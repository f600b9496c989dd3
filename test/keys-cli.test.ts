// npm run keys:create: a key straight into the database, printed once.
import { spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { sql } from './helpers/keys.js';
import { ROOT } from './helpers/server-process.js';

let app: App;
let url: string;
beforeAll(async () => {
  app = await buildTestApp();
  url = (await testDatabase()).url;
});

function keysCreate(args: string[]) {
  return spawnSync('npm', ['run', '-s', 'keys:create', '--', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', DATABASE_URL: url, NODE_ENV: 'test', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('npm run keys:create', () => {
  it('creates a working key and prints it once on stdout', async () => {
    const r = keysCreate(['--name', 'ops bootstrap', '--role-ids', '1,3', '--expires-in', '90d', '--description', 'from the CLI']);
    expect(r.status, r.stderr).toBe(0);
    const key = r.stdout.trim();
    expect(key).toMatch(/^jim_ak_[0-9a-f]{64}$/);
    expect(r.stderr).toMatch(/Created API key "ops bootstrap" \(id [0-9a-f-]{36}; roles: Administrator, Reader; expires: 20\d\d-/);
    expect(r.stderr).toMatch(/not shown again/);
    expect(r.stderr).not.toContain(key);

    const me = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': key } });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ name: 'ops bootstrap', roles: [{ id: 1, name: 'Administrator' }, { id: 3, name: 'Reader' }] });
    const [row] = await sql<{ expires_at: Date; description: string }>(url, 'SELECT expires_at, description FROM api_keys WHERE id = $1', [me.json().id]);
    const days = (row.expires_at.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThan(90.1);
    expect(row.description).toBe('from the CLI');
    const [change] = await sql(url, 'SELECT actor_type, actor_name FROM api_key_changes WHERE api_key_id = $1', [me.json().id]);
    expect(change).toEqual({ actor_type: 'system', actor_name: 'keys:create' });
  });

  it.each([
    [['--role-ids', '1'], /--name is required/],
    [['--name', 'x', '--role-ids', 'admin'], /not a role id/],
    [['--name', 'x', '--expires-in', 'soon'], /--expires-in/],
    [['--name', 'x', '--expires-at', '2001-01-01T00:00:00Z', '--expires-in', '1d'], /not both/],
    [['--name', 'x', '--bogus'], /Unknown option/],
    [['--name', ' '], /^keys:create: name must not be blank$/m],
  ])('refuses %j with a usage error (exit 2), creating nothing', async (args, message) => {
    const before = await sql(url, 'SELECT count(*)::int AS n FROM api_keys');
    const r = keysCreate(args as string[]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stderr).toMatch(/usage: npm run keys:create/);
    expect(r.stdout).toBe('');
    expect(await sql(url, 'SELECT count(*)::int AS n FROM api_keys')).toEqual(before);
  });

  it('an unknown role is an error naming it (exit 1)', async () => {
    const r = keysCreate(['--name', 'x', '--role-ids', '9']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/One or more role IDs are invalid: 9/);
    expect(r.stdout).toBe('');
  });
});
