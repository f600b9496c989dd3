// Three keyward processes on one database and one Redis behind Debian's nginx running
// deploy/nginx.conf (the compose cluster profile's proxy), driven through the proxy: limits add
// up across instances, a disable is refused on the next request whichever instance answers, the
// verify event stream passes through, and killing an instance mid-traffic loses no acknowledged
// write and doubles no create.
import { randomBytes, randomInt } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase } from './helpers/databases.js';
import { sql } from './helpers/keys.js';
import { findNginx, startNginx, type Nginx } from './helpers/nginx.js';
import { freePort, killHard, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';
import { openSse } from './helpers/sse.js';

const nginx = findNginx();
const redisUp = await new Promise<boolean>((resolve) => {
  const s = net.connect({ host: '127.0.0.1', port: 6379 });
  s.once('connect', () => (s.destroy(), resolve(true)));
  s.once('error', () => resolve(false));
});
const skip = 'missing' in nginx ? nginx.missing : redisUp ? null : 'no Redis at 127.0.0.1:6379';
if (skip) process.stdout.write(`[cluster.test] skipped: ${skip}\n`);

const KEY_MAX = 30;
const IP_MAX = 10;

/** Each run's own client address on loopback: the proxy passes it on, Redis counts it. */
const clientAddress = () => `127.${randomInt(1, 250)}.${randomInt(1, 250)}.${randomInt(2, 250)}`;

interface Reply {
  status: number;
  body: any;
}

function client(base: string, localAddress: string) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16, localAddress });
  const call = (method: string, path: string, opts: { key?: string; body?: unknown } = {}): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
      const req = http.request(
        `${base}${path}`,
        {
          method,
          agent,
          headers: {
            ...(opts.key ? { 'x-api-key': opts.key } : {}),
            ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => (text += c));
          res.on('end', () => {
            let body: unknown = text;
            try {
              body = text ? JSON.parse(text) : null;
            } catch {
              // not JSON (an nginx error page)
            }
            resolve({ status: res.statusCode!, body });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  return { call, close: () => agent.destroy() };
}

describe.skipIf(skip !== null)('three instances behind nginx (deploy/nginx.conf) with one Redis', () => {
  const servers: RunningServer[] = [];
  const ports: number[] = [];
  let proxy: Nginx;
  let dbUrl: string;
  let drop: () => Promise<void>;
  let api: ReturnType<typeof client>;
  let admin: string;
  const address = clientAddress();

  beforeAll(async () => {
    const db = await createDatabase(inject('pgAdminUrl'), { template: inject('pgTemplate'), prefix: `${inject('pgTemplate')}_cluster` });
    dbUrl = db.url;
    drop = db.drop;
    const infra = `jim_ak_${randomBytes(32).toString('hex')}`;
    for (let i = 0; i < 3; i++) ports.push(await freePort());
    // Started together, as compose starts them: one of them creates the infrastructure key.
    for (const port of ports) {
      servers.push(
        startServer({
          NODE_ENV: 'test',
          ARGON2_MEMORY_KIB: '1024',
          ARGON2_TIME_COST: '1',
          LOG_LEVEL: 'info',
          PORT: String(port),
          DATABASE_URL: dbUrl,
          REDIS_URL: 'redis://127.0.0.1:6379',
          TRUST_PROXY: '127.0.0.1',
          RATE_LIMIT_KEY_MAX: String(KEY_MAX),
          RATE_LIMIT_IP_MAX: String(IP_MAX),
          AUTH_FAILURE_DELAY_MS: '0',
          JIM_INFRASTRUCTURE_API_KEY: infra,
          VERIFY_EVENTS_HEARTBEAT_MS: '1000',
        }),
      );
    }
    await Promise.all(ports.map((port, i) => waitForHealthy(port, servers[i]!)));
    proxy = await startNginx((nginx as { path: string }).path, ports);
    api = client(proxy.url, address);
    const created = await api.call('POST', '/api/v1/apikeys', { key: infra, body: { name: 'cluster-admin', roleIds: [1] } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    admin = created.body.key;
  }, 120_000);

  afterAll(async () => {
    api?.close();
    await proxy?.stop();
    for (const s of servers) killHard(s);
    await Promise.all(servers.map((s) => s.exited));
    await drop?.();
  });

  /** A key of its own (its own per-key budget), created through the proxy. */
  const newKey = async (name: string, roleIds = [3]) => {
    const r = await api.call('POST', '/api/v1/apikeys', { key: admin, body: { name, roleIds } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body as { id: string; key: string };
  };

  it('round robin reaches all three, and the per-key limit adds up across them (Redis)', async () => {
    const key = await newKey('limited');
    const before = (await proxy.accessLog()).length;
    const statuses: number[] = [];
    for (let i = 0; i < KEY_MAX + 6; i++) statuses.push((await api.call('GET', '/api/v1/userinfo', { key: key.key })).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(KEY_MAX);
    expect(statuses.slice(KEY_MAX)).toEqual(Array(6).fill(429));
    const upstreams = new Set((await proxy.accessLog()).slice(before).map((l) => l.split(' ')[0]));
    expect([...upstreams].sort()).toEqual(ports.map((p) => `127.0.0.1:${p}`).sort());
  });

  it('the per-address failure budget adds up across instances, counted for the address nginx passes on', async () => {
    const other = client(proxy.url, clientAddress());
    try {
      const statuses: number[] = [];
      for (let i = 0; i < IP_MAX + 4; i++) statuses.push((await other.call('GET', '/api/v1/userinfo', { key: `jim_ak_${randomBytes(32).toString('hex')}` })).status);
      expect(statuses.slice(0, IP_MAX)).toEqual(Array(IP_MAX).fill(401));
      expect(statuses.slice(IP_MAX)).toEqual(Array(4).fill(429));
      // Another address is not affected (X-Forwarded-For is replaced, not trusted from the client).
      expect((await api.call('GET', '/api/v1/userinfo', { key: admin })).status).toBe(200);
    } finally {
      other.close();
    }
  });

  it('a disable through the proxy is refused on the very next request, whichever instance answers', async () => {
    for (let trial = 0; trial < 8; trial++) {
      const key = await newKey(`revoked-${trial}`);
      for (let i = 0; i < 6; i++) expect((await api.call('GET', '/api/v1/userinfo', { key: key.key })).status).toBe(200); // cached on all three
      const off = await api.call('PATCH', `/api/v1/apikeys/${key.id}`, { key: admin, body: { isEnabled: false } });
      expect(off.status).toBe(200);
      // From an address of its own: refusals count against the address's failure budget.
      // Through the proxy, and straight to each instance (the proxy's own latency must not be what hides a stale cache).
      const from = clientAddress();
      const callers = [proxy.url, proxy.url, proxy.url, ...ports.map((p) => `http://127.0.0.1:${p}`)].map((base) => client(base, from));
      const next = await Promise.all(callers.map((c) => c.call('GET', '/api/v1/userinfo', { key: key.key })));
      for (const c of callers) c.close();
      expect(next.map((r) => `${r.status} ${r.body?.code}`), `trial ${trial}`).toEqual(Array(6).fill('401 API_KEY_DISABLED'));
    }
  });

  it('the verify event stream through the proxy delivers invalidations as they happen (no proxy buffering)', async () => {
    const verifier = await newKey('verifier', [5]);
    const watched = await newKey('watched');
    const stream = await openSse(`${proxy.url}/api/v1/apikeys/verify/events`, verifier.key, { localAddress: address });
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
      await stream.next((e) => e.event === 'reset');
      // Heartbeats (a few bytes each) arrive at all only if nginx passes them on unbuffered.
      const h1 = await stream.next((e) => e.event === 'heartbeat', 5_000);
      await stream.next((e) => e.event === 'heartbeat', 5_000, stream.events.indexOf(h1) + 1);
      for (let i = 0; i < 3; i++) {
        const from = stream.events.length;
        const patched = await api.call('PATCH', `/api/v1/apikeys/${watched.id}`, { key: admin, body: { description: `change ${i}` } });
        expect(patched.status).toBe(200);
        await stream.next((e) => e.event === 'invalidate' && JSON.parse(e.data).keyIds.includes(watched.id), 2_000, from);
      }
    } finally {
      stream.close();
    }
  });

  it('killing one instance mid-traffic loses no acknowledged write, and no create happens twice', async () => {
    const writers = await Promise.all([0, 1, 2, 3].map((i) => newKey(`writer-${i}`, [1])));
    const acknowledged = new Map<string, string>(); // name → id
    const outcomes: Record<string, number> = {};
    let attempts = 0;
    const worker = async (w: number) => {
      for (let n = 0; n < KEY_MAX - 2; n++) {
        const name = `burst-${w}-${n}`;
        attempts++;
        const r = await api.call('POST', '/api/v1/apikeys', { key: writers[w]!.key, body: { name, roleIds: [3] } }).catch(() => ({ status: 0, body: null }));
        outcomes[r.status] = (outcomes[r.status] ?? 0) + 1;
        if (r.status === 201) acknowledged.set(name, r.body.id);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    const traffic = Promise.all([0, 1, 2, 3].map(worker));
    await new Promise((r) => setTimeout(r, 250));
    killHard(servers[2]!);
    const afterKill = acknowledged.size;
    await traffic;
    // Creates went on after the kill, through the two that are left.
    expect(acknowledged.size).toBeGreaterThan(afterKill + 20);
    // Anything other than 201 is the proxy saying the request died with the instance.
    for (const status of Object.keys(outcomes).map(Number)) expect([201, 502]).toContain(status);
    const rows = await sql<{ name: string; id: string; n: number }>(dbUrl, `SELECT name, min(id::text) AS id, count(*)::int AS n FROM api_keys WHERE name LIKE 'burst-%' GROUP BY name`);
    const stored = new Map(rows.map((r) => [r.name, r]));
    for (const [name, id] of acknowledged) expect(stored.get(name)?.id, name).toBe(id);
    for (const r of rows) expect(r.n, r.name).toBe(1);
    expect(rows.length).toBeLessThanOrEqual(attempts);
    expect(rows.length - acknowledged.size).toBeLessThanOrEqual(outcomes[502] ?? 0); // committed but unanswered: at most one per lost request
    // The survivors still answer, and a disable still reaches both.
    const key = await newKey('after-kill');
    for (let i = 0; i < 4; i++) expect((await api.call('GET', '/api/v1/userinfo', { key: key.key })).status).toBe(200);
    expect((await api.call('PATCH', `/api/v1/apikeys/${key.id}`, { key: admin, body: { isEnabled: false } })).status).toBe(200);
    const fresh = client(proxy.url, clientAddress());
    for (let i = 0; i < 4; i++) expect((await fresh.call('GET', '/api/v1/userinfo', { key: key.key })).status).toBe(401);
    fresh.close();
  }, 60_000);
});
