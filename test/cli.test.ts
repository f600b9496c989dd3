// The `keyward` command line, run as its own process against a real server (this file's app on
// a real socket): every command and flag, what-if, confirmation on a terminal, and pipes.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, json, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { freePort, ROOT } from './helpers/server-process.js';

const CLI = path.join(ROOT, 'bin/keyward.mjs');
let app: App;
let admin: SeededKey;
let url: string;
let dbUrl: string;
let dir: string;

/** What reached the server: method, path and JSON body of every /api/v1/apikeys request. */
const bodies: Array<{ method: string; path: string; body: unknown }> = [];

beforeAll(async () => {
  // Webhooks on, towards loopback (the webhooks commands' receiver).
  app = await buildTestApp({ ready: false, env: { WEBHOOK_SECRET_KEY: '01'.repeat(32), WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32', WEBHOOK_POLL_MS: '50' } });
  app.addHook('preHandler', async (req) => {
    if (req.url.startsWith('/api/v1/apikeys')) bodies.push({ method: req.method, path: req.url.split('?')[0], body: req.body });
  });
  await app.ready();
  dbUrl = (await testDatabase()).url;
  admin = await seedKey(app, { roleIds: [ADMIN], name: 'cli-admin' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  dir = await mkdtemp(path.join(tmpdir(), 'keyward-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `tty` runs it under script(1), so its standard input is a terminal fed `input`. */
function cli(args: string[], opts: { input?: string; env?: Record<string, string>; tty?: boolean; key?: string | null; pipeIn?: string } = {}): Promise<Run> {
  const env: Record<string, string> = { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', KEYWARD_URL: url, ...opts.env };
  if (opts.key !== null) env.KEYWARD_API_KEY = opts.key ?? admin.secret;
  const q = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  // Under script(1), `pipeIn` is piped to the CLI's stdin while the terminal stays /dev/tty.
  const quoted = (opts.pipeIn !== undefined ? `printf '%s\\n' ${q(opts.pipeIn)} | ` : '') + [process.execPath, CLI, ...args].map(q).join(' ');
  const child = opts.tty
    ? spawn('script', ['-qec', quoted, '/dev/null'], { env, cwd: dir })
    : // A new session: no controlling terminal, so /dev/tty cannot be opened either.
      spawn(process.execPath, [CLI, ...args], { env, cwd: dir, detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(opts.input ?? '');
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

const keyRow = async (name: string) =>
  (await sql<{ id: string; name: string; description: string | null; is_enabled: boolean; expires_at: Date | null }>(
    dbUrl,
    'SELECT id, name, description, is_enabled, expires_at FROM api_keys WHERE name = $1',
    [name],
  ))[0];
const roleIdsOf = async (id: string) =>
  (await sql<{ role_id: number }>(dbUrl, 'SELECT role_id FROM api_key_roles WHERE api_key_id = $1 ORDER BY role_id', [id])).map((r) => r.role_id);
const countKeys = async () => (await sql<{ n: number }>(dbUrl, 'SELECT count(*)::int AS n FROM api_keys'))[0].n;

describe('keyward roles list', () => {
  it('prints a table, or JSON with --json', async () => {
    const table = await cli(['roles', 'list']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+BUILT-IN\s+PERMISSIONS$/);
    expect(table.stdout).toMatch(/^3\s+Reader\s+yes\s+apikeys\.read, audit\.read, roles\.read$/m);
    const asJson = await cli(['roles', 'list', '--json']);
    expect(JSON.parse(asJson.stdout).map((r: { name: string }) => r.name)).toEqual(['Administrator', 'Operator', 'Reader', 'Monitoring', 'Verifier']);
  });
});

describe('keyward webhooks', () => {
  it('creates (the secret alone on stdout), lists, tests, shows deliveries and removes; exit 2 for an unknown id', async () => {
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    try {
      const created = await cli(['webhooks', 'create', '--endpoint', hookUrl, '--events', 'apikey.created, apikey.revoked', '--description', 'cli']);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout).toMatch(/^whsec_[A-Za-z0-9+/]{32}\n$/);
      const id = /created webhook ([0-9a-f-]{36})/.exec(created.stderr)![1];
      expect(created.stderr).toContain('shown only now');

      const listed = await cli(['webhooks', 'list']);
      expect(listed.stdout.split('\n')[0]).toMatch(/^ID\s+URL\s+ENABLED\s+EVENTS\s+FAILING SINCE$/);
      expect(listed.stdout).toContain(`${id}  ${hookUrl}`);
      expect(listed.stdout).not.toContain('whsec_');
      expect(JSON.parse((await cli(['webhooks', 'list', '--json'])).stdout).find((w: { id: string }) => w.id === id).eventTypes).toEqual(['apikey.created', 'apikey.revoked']);

      const tested = await cli(['webhooks', 'test', id]);
      expect(tested.code, tested.stderr).toBe(0);
      expect(tested.stdout).toMatch(/^succeeded: 204 in \d+ ms\n$/);
      expect(JSON.parse(received.at(-1)!).type).toBe('ping');

      const log = await cli(['webhooks', 'deliveries', id, '--limit', '5']);
      expect(log.stdout.split('\n')[0]).toMatch(/^CREATED\s+EVENT ID\s+TYPE\s+STATUS\s+ATTEMPTS\s+LAST$/);
      expect(log.stdout).toMatch(/msg_\S+\s+ping\s+succeeded\s+1\s+204/);
      expect((await cli(['webhooks', 'deliveries', id, '--limit', '0'])).code).toBe(3);

      expect((await cli(['webhooks', 'remove', id])).code).toBe(0);
      const gone = await cli(['webhooks', 'test', id]);
      expect(gone.code).toBe(2);
      expect(gone.stderr).toMatch(/WEBHOOK_NOT_FOUND/);
      expect((await cli(['webhooks', 'create', '--endpoint', hookUrl, '--events', 'apikey.exploded'])).stderr).toMatch(/eventTypes\[0\] must be one of apikey\.created/);
    } finally {
      receiver.close();
    }
  });
});

describe('keyward apikey new', () => {
  it('prints nothing on stdout without --pass-thru (as the cmdlet), and one line on stderr that the secret is gone', async () => {
    const r = await cli(['apikey', 'new', '--name', 'cli-silent', '--role-ids', '3', '--description', 'made by the cli', '--change-reason', 'ticket 42']);
    const row = await keyRow('cli-silent');
    expect(r).toEqual({
      code: 0,
      stdout: '',
      stderr: `keyward: created API key "cli-silent" (id ${row.id}); its secret was not shown and cannot be recovered (use --pass-thru to see it when creating)\n`,
    });
    expect(row).toMatchObject({ description: 'made by the cli', is_enabled: true, expires_at: null });
    expect(await roleIdsOf(row.id)).toEqual([READER]);
    const history = await sql<{ change_reason: string }>(dbUrl, 'SELECT change_reason FROM api_key_changes WHERE api_key_id = $1', [row.id]);
    expect(history.map((h) => h.change_reason)).toEqual(['ticket 42']);
  });

  it('--pass-thru prints the key once with a warning to store it; --json prints it as JSON', async () => {
    const r = await cli(['apikey', 'new', '--name', 'cli-passthru', '--role-ids', '1,3', '--expires-in', '90d', '--pass-thru']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/only time the full key is shown: store it now/);
    const key = /^Key\s+: (jim_ak_\S+)$/m.exec(r.stdout)![1];
    expect(r.stdout).toMatch(/^Roles\s+: Administrator \(1\), Reader \(3\)$/m);
    const me = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': key } });
    expect(me.json().name).toBe('cli-passthru');
    const row = await keyRow('cli-passthru');
    const days = (row.expires_at!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThan(90.1);

    const j = await cli(['apikey', 'new', '--name', 'cli-json', '--expires-at', '2031-01-01T00:00:00Z', '--pass-thru', '--json']);
    const body = JSON.parse(j.stdout);
    expect(body).toMatchObject({ name: 'cli-json', expiresAt: '2031-01-01T00:00:00.000Z', roles: [] });
    expect(body.key).toMatch(/^jim_ak_/);
  });

  it('--what-if prints what would be created and creates nothing', async () => {
    const before = await countKeys();
    const r = await cli(['apikey', 'new', '--name', 'cli-whatif', '--role-ids', '2', '--what-if', '--pass-thru']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('What if: would create API key "cli-whatif" (roles [2], expires none)\n');
    expect(await countKeys()).toBe(before);
  });

  it.each([
    [['--role-ids', 'x,1']],
    [['--expires-in', 'soon']],
    [['--expires-at', '2030-01-01T00:00:00Z', '--expires-in', '1d']],
    [['--bogus']],
  ])('refuses %j with exit 3, creating nothing', async (extra) => {
    const before = await countKeys();
    const r = await cli(['apikey', 'new', '--name', 'cli-bad', ...extra]);
    expect(r.code).toBe(3);
    expect(r.stderr).not.toBe('');
    expect(await countKeys()).toBe(before);
  });

  it('a missing --name is a usage error (3); the server refusing is an error (1) with its detail', async () => {
    expect((await cli(['apikey', 'new'])).code).toBe(3);
    const r = await cli(['apikey', 'new', '--name', 'cli-badrole', '--role-ids', '99']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('keyward: One or more role IDs are invalid: 99. (VALIDATION_FAILED)\n');
  });
});

describe('keyward apikey list and get', () => {
  it('lists as a table; filters by --name and --enabled/--disabled; --json', async () => {
    await seedKey(app, { name: 'lst-alpha', roleIds: [READER] });
    await seedKey(app, { name: 'lst-beta', isEnabled: false });
    const all = await cli(['apikey', 'list', '--name', 'lst-*']);
    expect(all.code).toBe(0);
    const lines = all.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+PREFIX\s+ENABLED\s+ROLES\s+EXPIRES\s+LAST USED$/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/)[1])).toEqual(['lst-alpha', 'lst-beta']);
    expect(lines[2]).toMatch(/\s+yes\s+Reader\s+-\s+-$/);
    const enabled = JSON.parse((await cli(['apikey', 'list', '--name', 'lst-*', '--enabled', '--json'])).stdout);
    expect(enabled.map((k: { name: string }) => k.name)).toEqual(['lst-alpha']);
    const disabled = JSON.parse((await cli(['apikey', 'list', '--name', 'LST-?ETA', '--disabled', '--json'])).stdout);
    expect(disabled.map((k: { name: string }) => k.name)).toEqual(['lst-beta']);
    expect((await cli(['apikey', 'list', '--enabled', '--disabled'])).code).toBe(3);
  });

  it('gets one key (never its secret); unknown id exits 2; a malformed id exits 1', async () => {
    const k = await seedKey(app, { name: 'get-me', description: 'hello' });
    const r = await cli(['apikey', 'get', k.id]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Id\\s+: ${k.id}$`, 'm'));
    expect(r.stdout).toMatch(/^Description\s+: hello$/m);
    expect(r.stdout).not.toMatch(/^Key\s/m);
    expect(r.stdout).not.toContain(k.secret);
    expect(JSON.parse((await cli(['apikey', 'get', k.id, '--json'])).stdout)).toMatchObject({ id: k.id, name: 'get-me' });
    const missing = await cli(['apikey', 'get', '00000000-0000-4000-8000-000000000000']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^keyward: .*\(API_KEY_NOT_FOUND\)\n$/);
    const bad = await cli(['apikey', 'get', 'not-a-guid']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/VALIDATION_FAILED/);
  });
});

describe('keyward apikey set', () => {
  it('sends only the given fields (PATCH), and the clearing forms', async () => {
    const k = await seedKey(app, { name: 'set-me', description: 'keep', roleIds: [READER], expiresAt: '2030-01-01T00:00:00Z' });
    expect(await cli(['apikey', 'set', k.id, '--name', 'set-me-2'])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await keyRow('set-me-2')).toMatchObject({ description: 'keep', is_enabled: true });
    expect(await roleIdsOf(k.id)).toEqual([READER]);

    expect((await cli(['apikey', 'set', k.id, '--disable', '--change-reason', 'leaver'])).code).toBe(0);
    expect((await keyRow('set-me-2')).is_enabled).toBe(false);
    expect((await cli(['apikey', 'set', k.id, '--enable', '--expires-at', 'none', '--description', '', '--role-ids', ''])).code).toBe(0);
    expect(await keyRow('set-me-2')).toMatchObject({ is_enabled: true, expires_at: null, description: null });
    expect(await roleIdsOf(k.id)).toEqual([]);

    const passThru = await cli(['apikey', 'set', k.id, '--role-ids', '2', '--pass-thru', '--json']);
    expect(JSON.parse(passThru.stdout)).toMatchObject({ id: k.id, roles: [{ id: 2, name: 'Operator' }] });
  });

  it('--what-if shows each change and changes nothing; usage errors exit 3', async () => {
    const k = await seedKey(app, { name: 'set-whatif', roleIds: [READER] });
    const r = await cli(['apikey', 'set', k.id, '--name', 'renamed', '--disable', '--what-if']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`What if: would update API key "set-whatif" (${k.id}): name "set-whatif" -> "renamed", isEnabled true -> false\n`);
    expect(await keyRow('set-whatif')).toMatchObject({ is_enabled: true });
    expect((await cli(['apikey', 'set', k.id, '--enable', '--disable'])).code).toBe(3);
    expect((await cli(['apikey', 'set', k.id])).code).toBe(3);
    expect((await cli(['apikey', 'set', '--disable'])).code).toBe(3);
    expect((await cli(['apikey', 'set', '00000000-0000-4000-8000-000000000000', '--disable'])).code).toBe(2);
  });

  it('takes ids from standard input: `list --json | set --stdin`, or one id per line', async () => {
    const a = await seedKey(app, { name: 'pipe-set-a' });
    const b = await seedKey(app, { name: 'pipe-set-b' });
    const listed = await cli(['apikey', 'list', '--name', 'pipe-set-*', '--json']);
    const r = await cli(['apikey', 'set', '--stdin', '--disable', '--pass-thru', '--json'], { input: listed.stdout });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).map((k: { isEnabled: boolean }) => k.isEnabled)).toEqual([false, false]);
    const lines = await cli(['apikey', 'set', '--stdin', '--enable'], { input: `${a.id}\n\n${b.id}\n00000000-0000-4000-8000-000000000000\n` });
    expect(lines.code).toBe(2); // the unknown id; the others were still changed
    expect(lines.stderr).toMatch(/^keyward: 00000000-0000-4000-8000-000000000000: .*API_KEY_NOT_FOUND/m);
    expect((await keyRow('pipe-set-a')).is_enabled).toBe(true);
    expect((await keyRow('pipe-set-b')).is_enabled).toBe(true);
  });
});

describe('keyward apikey remove', () => {
  it('refuses without --force when standard input is not a terminal; --force deletes; --pass-thru prints the deleted key', async () => {
    const k = await seedKey(app, { name: 'rm-me' });
    const refused = await cli(['apikey', 'remove', k.id]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/standard input is not a terminal \(add --force/);
    expect(await keyRow('rm-me')).toBeDefined();
    const r = await cli(['apikey', 'remove', k.id, '--force', '--change-reason', 'rotated', '--pass-thru', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: k.id, name: 'rm-me' });
    expect(await keyRow('rm-me')).toBeUndefined();
    const history = await sql<{ operation: string; change_reason: string }>(dbUrl, 'SELECT operation, change_reason FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [k.id]);
    expect(history.at(-1)).toMatchObject({ change_reason: 'rotated' });
    const again = await cli(['apikey', 'remove', k.id, '--force']);
    expect(again.code).toBe(2);
  });

  it('--what-if deletes nothing, even with --force (unlike the PowerShell module)', async () => {
    const k = await seedKey(app, { name: 'rm-whatif' });
    const r = await cli(['apikey', 'remove', k.id, '--force', '--what-if']);
    expect(r).toEqual({ code: 0, stdout: `What if: would delete API key "rm-whatif" (${k.id})\n`, stderr: '' });
    expect(await keyRow('rm-whatif')).toBeDefined();
  });

  it('the pipeline: `list --name temp-* --json | remove --force --stdin` deletes exactly those', async () => {
    for (const n of ['temp-1', 'temp-2', 'temp-3']) await seedKey(app, { name: n });
    await seedKey(app, { name: 'keep-temp' });
    const listed = await cli(['apikey', 'list', '--name', 'temp-*', '--json']);
    const r = await cli(['apikey', 'remove', '--force', '--stdin'], { input: listed.stdout });
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    const left = await sql<{ name: string }>(dbUrl, "SELECT name FROM api_keys WHERE name LIKE '%temp%' ORDER BY name");
    expect(left.map((x) => x.name)).toEqual(['keep-temp']);
    // A list that matched nothing: nothing to do, not an error (as in a PowerShell pipeline).
    expect(await cli(['apikey', 'remove', '--force', '--stdin'], { input: '[]\n' })).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await cli(['apikey', 'remove', '--force', '--stdin'], { input: '' })).code).toBe(0);
  });

  it('on a terminal, asks first: "n" keeps the key, "y" deletes it; --confirm asks for new and set too', async () => {
    const k = await seedKey(app, { name: 'rm-tty' });
    const no = await cli(['apikey', 'remove', k.id], { tty: true, input: 'n\n' });
    expect(no.code).toBe(0);
    expect(no.stdout).toContain(`Really delete API key "rm-tty" (${k.id})? [y/N]`);
    expect(await keyRow('rm-tty')).toBeDefined();
    const yes = await cli(['apikey', 'remove', k.id], { tty: true, input: 'y\n' });
    expect(yes.code, yes.stdout).toBe(0);
    expect(await keyRow('rm-tty')).toBeUndefined();

    const declined = await cli(['apikey', 'new', '--name', 'tty-new', '--confirm'], { tty: true, input: 'n\n' });
    expect(declined.stdout).toContain('Really create API key "tty-new"');
    expect(await keyRow('tty-new')).toBeUndefined();
    expect((await cli(['apikey', 'new', '--name', 'tty-new', '--confirm'], { tty: true, input: 'yes\n' })).code).toBe(0);
    const created = await keyRow('tty-new');
    expect(created).toBeDefined();
    const kept = await cli(['apikey', 'set', created.id, '--disable', '--confirm'], { tty: true, input: '\n' });
    expect(kept.code).toBe(0);
    expect(kept.stdout).toContain(`Really update API key "tty-new" (${created.id}): isEnabled true -> false? [y/N]`);
    expect((await keyRow('tty-new')).is_enabled).toBe(true);
    expect((await cli(['apikey', 'set', created.id, '--disable', '--confirm'], { tty: true, input: 'y\n' })).code).toBe(0);
    expect((await keyRow('tty-new')).is_enabled).toBe(false);

    // --force on a terminal does not ask; --confirm asks even with --force.
    const forced = await seedKey(app, { name: 'rm-forced' });
    const noQuestion = await cli(['apikey', 'remove', forced.id, '--force'], { tty: true, input: '' });
    expect(noQuestion.code).toBe(0);
    expect(noQuestion.stdout).not.toContain('Really');
    expect(await keyRow('rm-forced')).toBeUndefined();
    const asked = await seedKey(app, { name: 'rm-confirm' });
    const confirmNo = await cli(['apikey', 'remove', asked.id, '--force', '--confirm'], { tty: true, input: 'n\n' });
    expect(confirmNo.stdout).toContain('Really delete API key "rm-confirm"');
    expect(await keyRow('rm-confirm')).toBeDefined();

    // Ids piped in while a terminal is there: the question goes to the terminal (/dev/tty).
    const piped = await cli(['apikey', 'remove', '--force', '--confirm', '--stdin'], { tty: true, input: 'y\n', pipeIn: asked.id });
    expect(piped.code, piped.stdout).toBe(0);
    expect(piped.stdout).toContain('Really delete API key "rm-confirm"');
    expect(await keyRow('rm-confirm')).toBeUndefined();
    // --confirm with no terminal at all cannot ask: a usage error, nothing done.
    const noTty = await cli(['apikey', 'set', created.id, '--enable', '--confirm']);
    expect(noTty.code).toBe(3);
    expect(noTty.stderr).toMatch(/cannot ask for confirmation: there is no terminal/);
    expect((await keyRow('tty-new')).is_enabled).toBe(false);
  });
});

/** The id of the key `secret` authenticates as (GET /userinfo), or the status it got. */
const whoIs = async (secret: string) => {
  const r = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': secret } });
  return r.statusCode === 200 ? (r.json() as { id: string }).id : r.statusCode;
};
const prefixOf = async (id: string) => (await sql<{ key_prefix: string }>(dbUrl, 'SELECT key_prefix FROM api_keys WHERE id = $1', [id]))[0].key_prefix;
const rotations = () => bodies.filter((b) => b.method === 'POST' && b.path.endsWith('/rotate'));
/** A full secret (a prefix in a message is 16 characters and an ellipsis). */
const SECRET = /jim_ak_[0-9a-f]{64}/;

describe('keyward apikey rotate', () => {
  it('prints only the new secret on stdout: it authenticates as the same id, the old one stops (no grace); --change-reason is recorded', async () => {
    const k = await seedKey(app, { name: 'rot-plain', roleIds: [READER] });
    const before = await prefixOf(k.id);
    bodies.length = 0;
    const r = await cli(['apikey', 'rotate', k.id, '--change-reason', 'CHG-7']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${SECRET.source}\n$`));
    const secret = r.stdout.trim();
    expect(r.stderr).toBe(
      'keyward: this is the only time the full key is shown: store it now (it cannot be retrieved later).\n' +
        `keyward: rotated API key "rot-plain" (${k.id}); the old secret no longer works\n`,
    );
    expect(bodies).toEqual([{ method: 'POST', path: `/api/v1/apikeys/${k.id}/rotate`, body: { changeReason: 'CHG-7' } }]);
    expect(await whoIs(secret)).toBe(k.id);
    expect(await whoIs(k.secret)).toBe(401);
    expect(await prefixOf(k.id)).toBe(secret.slice(0, 16));
    expect(secret.slice(0, 16)).not.toBe(before);
    expect(await roleIdsOf(k.id)).toEqual([READER]);
    const history = await sql<{ operation: string; change_reason: string }>(dbUrl, 'SELECT operation, change_reason FROM api_key_changes WHERE api_key_id = $1 ORDER BY version', [k.id]);
    expect(history.at(-1)).toEqual({ operation: 'rotate', change_reason: 'CHG-7' });
  });

  it('--grace-period 1h: the old secret keeps working, and stderr says until when', async () => {
    const k = await seedKey(app, { name: 'rot-grace' });
    const oldPrefix = await prefixOf(k.id);
    bodies.length = 0;
    const r = await cli(['apikey', 'rotate', k.id, '--grace-period', '1h']);
    expect(r.code, r.stderr).toBe(0);
    const secret = r.stdout.trim();
    expect(secret).toMatch(new RegExp(`^${SECRET.source}$`));
    const until = new RegExp(`^keyward: rotated API key "rot-grace" \\(${k.id}\\); the old secret \\(${oldPrefix}…\\) keeps working until (\\S+Z)$`, 'm').exec(r.stderr);
    expect(until, r.stderr).not.toBeNull();
    const minutes = (Date.parse(until![1]) - Date.now()) / 60_000;
    expect(minutes).toBeGreaterThan(58);
    expect(minutes).toBeLessThanOrEqual(60);
    expect(bodies).toEqual([{ method: 'POST', path: `/api/v1/apikeys/${k.id}/rotate`, body: { gracePeriodSeconds: 3600 } }]);
    expect(await whoIs(secret)).toBe(k.id);
    expect(await whoIs(k.secret)).toBe(k.id);
    // While the grace runs, `get` shows the old secret's prefix and end.
    const shown = await cli(['apikey', 'get', k.id]);
    expect(shown.stdout).toMatch(new RegExp(`^PreviousKeyPrefix\\s+: ${oldPrefix}$`, 'm'));
    expect(shown.stdout).toMatch(new RegExp(`^PreviousKeyExpiresAt\\s+: ${until![1]}$`, 'm'));

    // Plain seconds, and the bounds: 0 and 86400 (1d, 24h).
    bodies.length = 0;
    for (const grace of ['0', '90', '86400', '24h', '1d']) {
      const again = await cli(['apikey', 'rotate', k.id, '--grace-period', grace]);
      expect(again.code, `${grace}: ${again.stderr}`).toBe(0);
    }
    expect(rotations().map((b) => (b.body as { gracePeriodSeconds: number }).gracePeriodSeconds)).toEqual([0, 90, 86400, 86400, 86400]);
  });

  it('--what-if names the key and rotates nothing; --confirm answered "n" rotates nothing, "y" rotates', async () => {
    const k = await seedKey(app, { name: 'rot-ask' });
    const prefix = await prefixOf(k.id);
    bodies.length = 0;
    const whatIf = await cli(['apikey', 'rotate', k.id, '--grace-period', '30m', '--what-if', '--pass-thru']);
    expect(whatIf).toEqual({
      code: 0,
      stdout: `What if: would rotate API key "rot-ask" (${k.id}): a new secret; the old one (${prefix}…) keeps working for 1800 s (30m)\n`,
      stderr: '',
    });
    const noGrace = await cli(['apikey', 'rotate', k.id, '--what-if']);
    expect(noGrace.stdout).toBe(`What if: would rotate API key "rot-ask" (${k.id}): a new secret; the old one (${prefix}…) stops working at once\n`);
    expect(rotations()).toEqual([]);
    expect(await prefixOf(k.id)).toBe(prefix);
    expect(await whoIs(k.secret)).toBe(k.id);

    const no = await cli(['apikey', 'rotate', k.id, '--confirm'], { tty: true, input: 'n\n' });
    expect(no.code).toBe(0);
    expect(no.stdout).toContain(`Really rotate API key "rot-ask" (${k.id}): a new secret; the old one (${prefix}…) stops working at once? [y/N]`);
    expect(no.stdout).toContain(`keyward: ${k.id}: not rotated`);
    expect(no.stdout).not.toMatch(SECRET);
    expect(await prefixOf(k.id)).toBe(prefix);
    expect(await whoIs(k.secret)).toBe(k.id);

    const yes = await cli(['apikey', 'rotate', k.id, '--confirm'], { tty: true, input: 'y\n' });
    expect(yes.code, yes.stdout).toBe(0);
    const secret = SECRET.exec(yes.stdout)![0];
    expect(await whoIs(secret)).toBe(k.id);
    expect(await prefixOf(k.id)).not.toBe(prefix);
    // No terminal at all: --confirm cannot ask, so nothing is rotated.
    const noTty = await cli(['apikey', 'rotate', k.id, '--confirm']);
    expect(noTty.code).toBe(3);
    expect(await whoIs(secret)).toBe(k.id);
  });

  it('--pass-thru prints the key with its new secret as `new --pass-thru` does; with --json, the reply body', async () => {
    const k = await seedKey(app, { name: 'rot-passthru', roleIds: [READER], description: 'rotated yearly' });
    const oldPrefix = await prefixOf(k.id);
    const r = await cli(['apikey', 'rotate', k.id, '--pass-thru', '--grace-period', '600']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^keyward: this is the only time the full key is shown: store it now/);
    expect(r.stdout).toMatch(new RegExp(`^Id\\s+: ${k.id}$`, 'm'));
    expect(r.stdout).toMatch(/^Description\s+: rotated yearly$/m);
    expect(r.stdout).toMatch(/^Roles\s+: Reader \(3\)$/m);
    expect(r.stdout).toMatch(new RegExp(`^PreviousKeyPrefix\\s+: ${oldPrefix}$`, 'm'));
    const secret = /^Key\s+: (jim_ak_\S+)$/m.exec(r.stdout)![1];
    expect(r.stdout).toMatch(new RegExp(`^KeyPrefix\\s+: ${secret.slice(0, 16)}$`, 'm'));
    expect(await whoIs(secret)).toBe(k.id);

    const j = await cli(['apikey', 'rotate', k.id, '--pass-thru', '--json', '--change-reason', 'CHG-9']);
    expect(j.code, j.stderr).toBe(0);
    const body = JSON.parse(j.stdout);
    expect(body).toMatchObject({ id: k.id, name: 'rot-passthru', roles: [{ id: READER, name: 'Reader' }], previousKeyExpiresAt: null });
    expect(body.key).toMatch(new RegExp(`^${SECRET.source}$`));
    expect(body.keyPrefix).toBe(body.key.slice(0, 16));
    expect(await whoIs(body.key)).toBe(k.id);
    expect(await whoIs(secret)).toBe(401); // no grace this time: the secret before it stopped
  });

  it('a disabled key: the server\'s 409 is reported (exit 1) and nothing changes; an unknown id exits 2', async () => {
    const k = await seedKey(app, { name: 'rot-disabled', isEnabled: false });
    const prefix = await prefixOf(k.id);
    const r = await cli(['apikey', 'rotate', k.id, '--grace-period', '1h']);
    // The problem the server answers, as the CLI prints every problem: detail, then code.
    const problem = await app.inject({ method: 'POST', url: `/api/v1/apikeys/${k.id}/rotate`, headers: { ...admin.headers, ...json }, payload: {} });
    expect(problem.statusCode).toBe(409);
    expect(problem.json().code).toBe('API_KEY_NOT_ROTATABLE');
    expect(r).toEqual({ code: 1, stdout: '', stderr: `keyward: ${problem.json().detail} (API_KEY_NOT_ROTATABLE)\n` });
    expect(await prefixOf(k.id)).toBe(prefix);
    const missing = await cli(['apikey', 'rotate', '00000000-0000-4000-8000-000000000000']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^keyward: .*\(API_KEY_NOT_FOUND\)\n$/);
    expect(missing.stdout).toBe('');
  });

  it.each([['86401'], ['2d'], ['1w'], ['soon'], ['-1'], ['1.5h'], ['']])('refuses --grace-period %j with exit 3, naming the rule and sending nothing', async (grace) => {
    const k = await seedKey(app, { name: `rot-bad-${grace}` });
    const prefix = await prefixOf(k.id);
    bodies.length = 0;
    const r = await cli(['apikey', 'rotate', k.id, `--grace-period=${grace}`]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^keyward: --grace-period: .*must be 0 to 86400 seconds/);
    expect(bodies).toEqual([]);
    expect(await prefixOf(k.id)).toBe(prefix);
  });

  it('an id is required, and only one (no --stdin): usage errors exit 3', async () => {
    expect((await cli(['apikey', 'rotate'])).code).toBe(3);
    expect((await cli(['apikey', 'rotate', '--stdin'], { input: `${admin.id}\n` })).code).toBe(3);
    expect((await cli(['apikey', 'rotate', admin.id, admin.id])).code).toBe(3);
  });
});

describe('usage, help and options', () => {
  it('help and --version exit 0; a bare command, an unknown command or option exit 3', async () => {
    for (const args of [['--help'], ['help'], ['help', 'apikey'], ['apikey', 'help', 'remove'], ['apikey', 'remove', '--help'], ['apikey', 'rotate', '--help']]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: keyward/);
    }
    const v = await cli(['--version']);
    expect(v).toEqual({ code: 0, stdout: '0.1.0\n', stderr: '' });
    for (const args of [[], ['apikey'], ['frobnicate'], ['apikey', 'list', '--frob']]) expect((await cli(args)).code, args.join(' ')).toBe(3);
  });

  it('--url overrides KEYWARD_URL; a wrong path is an error (1), not "not found" (2); redirects are not followed', async () => {
    const ok = await cli(['--url', url, 'roles', 'list', '--json'], { env: { KEYWARD_URL: 'http://127.0.0.1:9' } });
    expect(ok.code, ok.stderr).toBe(0);
    const wrongPath = await cli(['--url', `${url}/nowhere`, 'apikey', 'get', admin.id]);
    expect(wrongPath.code).toBe(1);
    // A redirecting front: the key must not follow it anywhere.
    const seen: string[] = [];
    const front = createServer((req, res) => {
      seen.push(String(req.headers['x-api-key'] ?? ''));
      res.writeHead(308, { location: `${url}${req.url}` }).end();
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const redirected = await cli(['--url', `http://127.0.0.1:${(front.address() as AddressInfo).port}`, 'apikey', 'list']);
    front.close();
    expect(redirected.code).toBe(1);
    expect(redirected.stderr).toMatch(/answered 308 with a redirect to http:\/\/127\.0\.0\.1:\d+\/api\/v1\/apikeys.*use that address as --url/);
    expect(seen).toHaveLength(1);
  });

  it('set: each field form is sent as given, and only those fields (the requests are recorded)', async () => {
    const k = await seedKey(app, { name: 'set-forms', description: 'old', roleIds: [READER] });
    bodies.length = 0;
    expect((await cli(['apikey', 'set', k.id, '--description', 'new text', '--expires-at', '2031-05-01T12:00:00Z'])).code).toBe(0);
    expect((await cli(['apikey', 'set', k.id, '--expires-in', '2d', '--change-reason', 'extend'])).code).toBe(0);
    const patches = bodies.filter((b) => b.method === 'PATCH');
    expect(patches[0].body).toEqual({ description: 'new text', expiresAt: '2031-05-01T12:00:00Z' });
    expect(Object.keys(patches[1].body as object)).toEqual(['expiresAt', 'changeReason']);
    const days = (Date.parse((patches[1].body as { expiresAt: string }).expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(1.99);
    expect(await keyRow('set-forms')).toMatchObject({ description: 'new text' });
    expect(await roleIdsOf(k.id)).toEqual([READER]);
  });

  it('--what-if with piped ids previews each and changes nothing; CRLF lines and `get --json` input work; --stdin on a terminal is refused', async () => {
    const a = await seedKey(app, { name: 'wi-a' });
    const b = await seedKey(app, { name: 'wi-b' });
    const r = await cli(['apikey', 'set', '--stdin', '--disable', '--what-if'], { input: `${a.id}\r\n${b.id}\r\n${a.id}\r\n` });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      `What if: would update API key "wi-a" (${a.id}): isEnabled true -> false`,
      `What if: would update API key "wi-b" (${b.id}): isEnabled true -> false`,
    ]);
    expect((await keyRow('wi-a')).is_enabled).toBe(true);
    const one = (await cli(['apikey', 'get', a.id, '--json'])).stdout;
    expect((await cli(['apikey', 'set', '--stdin', '--name', 'wi-a2'], { input: one })).code).toBe(0);
    expect(await keyRow('wi-a2')).toBeDefined();
    const onTty = await cli(['apikey', 'set', '--stdin', '--disable'], { tty: true, input: '' });
    expect(onTty.code).toBe(3);
    expect(onTty.stdout).toContain('pipe the ids in');
  });

  it('pass-thru tables for set and remove; an empty list says so on stderr', async () => {
    const k = await seedKey(app, { name: 'pt-table' });
    const set = await cli(['apikey', 'set', k.id, '--description', 'shown', '--pass-thru']);
    expect(set.stdout).toMatch(/^Description\s+: shown$/m);
    const rm = await cli(['apikey', 'remove', k.id, '--force', '--pass-thru']);
    expect(rm.stdout).toMatch(/^Name\s+: pt-table$/m);
    expect(await cli(['apikey', 'list', '--name', 'no-such-*'])).toEqual({ code: 0, stdout: '', stderr: 'keyward: no API keys match\n' });
  });
});

describe('where the key comes from', () => {
  it('KEYWARD_API_KEY, --api-key-file (warns when others can read it), --api-key-stdin, --api-key (warns); none is a usage error', async () => {
    const file = path.join(dir, 'key');
    await writeFile(file, `${admin.secret}\n`, { mode: 0o600 });
    await chmod(file, 0o600);
    const viaFile = await cli(['--api-key-file', file, 'roles', 'list', '--json'], { key: null });
    expect(viaFile.code, viaFile.stderr).toBe(0);
    expect(viaFile.stderr).toBe('');
    await chmod(file, 0o644);
    expect((await cli(['--api-key-file', file, 'roles', 'list'], { key: null })).stderr).toMatch(/readable by other users/);

    const viaStdin = await cli(['--api-key-stdin', 'roles', 'list', '--json'], { key: null, input: `${admin.secret}\n` });
    expect(viaStdin.code, viaStdin.stderr).toBe(0);
    // The key on the first line, ids after it.
    const k = await seedKey(app, { name: 'stdin-both' });
    const both = await cli(['--api-key-stdin', 'apikey', 'remove', '--force', '--stdin'], { key: null, input: `${admin.secret}\n${k.id}\n` });
    expect(both.code, both.stderr).toBe(0);
    expect(await keyRow('stdin-both')).toBeUndefined();

    // A key file's first line only; a key a header cannot carry is refused without showing it.
    await writeFile(file, `${admin.secret}\n# rotated monthly\n`, { mode: 0o600 });
    await chmod(file, 0o600);
    expect((await cli(['--api-key-file', file, 'roles', 'list'], { key: null })).code).toBe(0);
    await writeFile(file, `jim_ak_abc def${admin.secret}\n`);
    const badFile = await cli(['--api-key-file', file, 'roles', 'list'], { key: null });
    expect(badFile.code).toBe(3);
    expect(badFile.stderr).not.toContain(admin.secret);
    const badEnv = await cli(['roles', 'list'], { key: `${admin.secret}\nx` });
    expect(badEnv.code).toBe(3);
    expect(badEnv.stderr).not.toContain(admin.secret);
    const typo = await cli(['apikey', 'list', `--apikey=${admin.secret}`]);
    expect(typo.code).toBe(3);
    expect(typo.stderr).not.toContain(admin.secret.slice(7));

    const viaFlag = await cli(['--api-key', admin.secret, 'roles', 'list'], { key: null });
    expect(viaFlag.code).toBe(0);
    expect(viaFlag.stderr).toMatch(/visible to other users in the process list/);

    const none = await cli(['roles', 'list'], { key: null });
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/no API key: set KEYWARD_API_KEY/);
  });

  it('a wrong key prints the server detail (exit 1); an unreachable server exits 1; secrets are never echoed', async () => {
    const wrong = `${admin.secret.slice(0, -4)}AAAA`;
    const r = await cli(['apikey', 'list'], { key: wrong });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^keyward: .*\(API_KEY_INVALID\)\n$/);
    expect(r.stderr + r.stdout).not.toContain(wrong);
    const closed = await freePort();
    const down = await cli(['apikey', 'list'], { env: { KEYWARD_URL: `http://127.0.0.1:${closed}` } });
    expect(down.code).toBe(1);
    expect(down.stderr).toBe(`keyward: cannot reach http://127.0.0.1:${closed}: ECONNREFUSED\n`);
    expect((await cli(['--url', 'ftp://x', 'apikey', 'list'])).code).toBe(3);
  });
});

describe('keyward apikey new/set --allowed-cidrs, --rate-limit', () => {
  const settings = async (id: string) =>
    (await sql<{ allowed_cidrs: string[] | null; rate_limit_max: number | null; rate_limit_window_seconds: number | null }>(
      dbUrl,
      'SELECT allowed_cidrs, rate_limit_max, rate_limit_window_seconds FROM api_keys WHERE id = $1',
      [id],
    ))[0];

  it('new sets them; get shows them; set replaces and clears them, --what-if names the change', async () => {
    const r = await cli(['apikey', 'new', '--name', 'cli-acl', '--role-ids', String(READER), '--allowed-cidrs', '10.0.0.0/8, 2001:db8::/32', '--rate-limit', '100/1m', '--pass-thru', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const id = JSON.parse(r.stdout).id as string;
    expect(await settings(id)).toEqual({ allowed_cidrs: ['10.0.0.0/8', '2001:db8::/32'], rate_limit_max: 100, rate_limit_window_seconds: 60 });
    const shown = await cli(['apikey', 'get', id]);
    expect(shown.stdout).toMatch(/^AllowedCidrs\s+: 10\.0\.0\.0\/8, 2001:db8::\/32$/m);
    expect(shown.stdout).toMatch(/^RateLimit\s+: 100 per 60 s$/m);
    const whatIf = await cli(['apikey', 'set', id, '--allowed-cidrs', '192.0.2.0/24', '--what-if']);
    expect(whatIf.stdout).toBe(`What if: would update API key "cli-acl" (${id}): allowedCidrs [10.0.0.0/8, 2001:db8::/32] -> [192.0.2.0/24]\n`);
    expect((await settings(id)).allowed_cidrs).toEqual(['10.0.0.0/8', '2001:db8::/32']);
    expect((await cli(['apikey', 'set', id, '--allowed-cidrs', '192.0.2.0/24', '--rate-limit', '5/30'])).code).toBe(0);
    expect(await settings(id)).toEqual({ allowed_cidrs: ['192.0.2.0/24'], rate_limit_max: 5, rate_limit_window_seconds: 30 });
    expect((await cli(['apikey', 'set', id, '--allowed-cidrs', 'none', '--rate-limit', 'none'])).code).toBe(0);
    expect(await settings(id)).toEqual({ allowed_cidrs: [], rate_limit_max: null, rate_limit_window_seconds: null });
    const plain = await cli(['apikey', 'get', id]);
    expect(plain.stdout).not.toMatch(/AllowedCidrs|RateLimit/);
  });

  it('a bad block is the server\'s 400 naming it (exit 1); a bad --rate-limit is a usage error (exit 3); nothing changes', async () => {
    const k = await seedKey(app, { name: 'cli-acl-bad', roleIds: [READER] });
    const bad = await cli(['apikey', 'set', k.id, '--allowed-cidrs', '10.0.0.1/8']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/allowedCidrs\[0\] has host bits set \(10\.0\.0\.1\/8\): send 10\.0\.0\.0\/8.*\(VALIDATION_FAILED\)/);
    for (const value of ['100', 'fast', '10/2w', '-1/60']) {
      const r = await cli(['apikey', 'set', k.id, '--rate-limit', value]);
      expect(r.code, value).toBe(3);
      expect(r.stderr).toMatch(/--rate-limit: .*LIMIT\/WINDOW/);
    }
    expect(await settings(k.id)).toEqual({ allowed_cidrs: [], rate_limit_max: null, rate_limit_window_seconds: null });
  });
});
