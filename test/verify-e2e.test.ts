// keyward and the example service (examples/orders-api, using @keyward/verify) as two separate
// processes, as a user runs them: a key works, is refused on the next request after a disable,
// works again after an enable; while keyward is stopped the example answers 503, and it serves
// again once keyward is back.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateKey } from '../src/auth/key-format.js';
import { createDatabase } from './helpers/databases.js';
import { freePort, killHard, ROOT, serverPid, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';

const CHEAP = { NODE_ENV: 'test', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', RATE_LIMIT_ENABLED: 'false', LOG_LEVEL: 'info', AUTH_FAILURE_DELAY_MS: '0' };
const INFRA = generateKey();

const children: ChildProcess[] = [];
const servers: RunningServer[] = [];
const drops: Array<() => Promise<void>> = [];
afterAll(async () => {
  servers.forEach(killHard);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of drops) await d().catch(() => {});
});

let dbUrl: string;
let keywardPort: number;
let keyward: RunningServer;
const api = (path: string, init: { method?: string; key?: string; body?: unknown } = {}): Promise<{ status: number; json(): Promise<any> }> =>
  fetch(`http://127.0.0.1:${keywardPort}/api/v1${path}`, {
    method: init.method ?? 'GET',
    headers: { 'x-api-key': init.key ?? INFRA, ...(init.body ? { 'content-type': 'application/json' } : {}) },
    body: init.body ? JSON.stringify(init.body) : undefined,
  });

async function startKeyward() {
  keyward = startServer({ ...CHEAP, PORT: String(keywardPort), DATABASE_URL: dbUrl, JIM_INFRASTRUCTURE_API_KEY: INFRA });
  servers.push(keyward);
  await waitForHealthy(keywardPort, keyward);
}

async function stopKeyward() {
  process.kill(serverPid(keyward)!, 'SIGTERM');
  await keyward.exited;
}

/** The example, as its README runs it; resolves with its base URL once it prints that it listens. */
async function startExample(verifierKey: string): Promise<{ base: string; output: () => string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/orders-api/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', KEYWARD_URL: `http://127.0.0.1:${keywardPort}`, KEYWARD_API_KEY: verifierKey, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`example did not start:\n${out}`)), 60_000);
    child.stdout!.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`example exited (${code}):\n${out}`)));
  });
  return { base, output: () => out, child };
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

describe('keyward and a service verifying keys through @keyward/verify, as separate processes', () => {
  let example: Awaited<ReturnType<typeof startExample>>;
  let client: { id: string; key: string };
  const orders = (key?: string, method = 'GET') =>
    fetch(`${example.base}/orders`, {
      method,
      headers: { ...(key ? { 'x-api-key': key } : {}), ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' ? JSON.stringify({ item: 'widget' }) : undefined,
    });
  const live = async () => ((await (await fetch(`${example.base}/health`)).json()) as { keyward: { live: boolean } }).keyward.live;

  beforeAll(async () => {
    const db = await createDatabase(inject('pgAdminUrl'), { template: inject('pgTemplate'), prefix: `${inject('pgTemplate')}_e2e` });
    drops.push(db.drop);
    dbUrl = db.url;
    keywardPort = await freePort();
    await startKeyward();
    const reader = await (await api('/roles', { method: 'POST', body: { name: 'orders-reader', permissions: ['orders.read'] } })).json();
    const gateway = await (await api('/apikeys', { method: 'POST', body: { name: 'orders-api', roleIds: [5] } })).json();
    const created = await (await api('/apikeys', { method: 'POST', body: { name: 'shop-frontend', roleIds: [reader.id], metadata: { tenantId: 't-42' } } })).json();
    client = { id: created.id, key: created.key };
    example = await startExample(gateway.key);
    await until(live, 20_000, 'the example\'s event stream going live');
  }, 120_000);

  it('a key works with the permission the route needs; without it 403; without a key 401 — as problem+json', async () => {
    const ok = await orders(client.key);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { caller: { keyId: string } }).caller.keyId).toBe(client.id);
    const forbidden = await orders(client.key, 'POST');
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await forbidden.json()).toMatchObject({ status: 403, code: 'FORBIDDEN', detail: expect.stringContaining('orders.write') });
    const anonymous = await orders();
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { code: string }).code).toBe('UNAUTHENTICATED');
    const bearer = await fetch(`${example.base}/orders`, { headers: { authorization: `Bearer ${client.key}` } });
    expect(bearer.status).toBe(200);
  });

  it('is refused on the next request after a disable through keyward, and works again after an enable', async () => {
    // Cached in the example first (answers are kept only once the stream has settled).
    await new Promise((r) => setTimeout(r, 1_200));
    for (let i = 0; i < 3; i++) expect((await orders(client.key)).status).toBe(200);
    for (let round = 0; round < 5; round++) {
      const off = await api(`/apikeys/${client.id}`, { method: 'PATCH', body: { isEnabled: false, changeReason: `e2e ${round}` } });
      expect(off.status).toBe(200);
      const refused = await orders(client.key);
      expect(refused.status, `round ${round}`).toBe(401);
      expect(((await refused.json()) as { code: string }).code).toBe('API_KEY_DISABLED');
      const on = await api(`/apikeys/${client.id}`, { method: 'PATCH', body: { isEnabled: true } });
      expect(on.status).toBe(200);
      expect((await orders(client.key)).status, `round ${round}`).toBe(200);
      await new Promise((r) => setTimeout(r, 1_100)); // cached again before the next disable
      expect((await orders(client.key)).status).toBe(200);
    }
  }, 60_000);

  it('answers 503 while keyward is stopped (nothing stale is served), and serves again once it is back', async () => {
    expect((await orders(client.key)).status).toBe(200);
    await stopKeyward();
    await until(async () => !(await live()), 5_000, 'the example noticing keyward is gone');
    const down = await orders(client.key);
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('1');
    const body = (await down.json()) as { code: string; detail: string };
    expect(body.code).toBe('KEYWARD_UNAVAILABLE');
    expect(JSON.stringify(body)).not.toContain(client.key);
    expect(example.output()).not.toContain(client.key);
    expect((await fetch(`${example.base}/health`)).status).toBe(200); // unprotected routes still answer
    await startKeyward();
    await until(live, 20_000, 'the example reconnecting');
    expect((await orders(client.key)).status).toBe(200);
  }, 120_000);

  it('stops cleanly on SIGTERM', async () => {
    example.child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => example.child.once('exit', resolve));
    expect(code, `the example's output:\n${example.output()}`).toBe(0);
  }, 30_000);
});
