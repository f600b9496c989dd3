// Outbound safety: with the defaults (https only, no private network allowed), every forbidden
// address form is refused when the subscription is saved — IPv4, IPv6, IPv4-mapped, decimal,
// hex and short forms, metadata addresses, names resolving to loopback — and, for a name that
// resolves somewhere else by the time of the attempt (DNS rebinding), at delivery, before any
// connection is made.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { forbiddenKind, urlProblem } from '../src/webhooks/address-guard.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, json, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { until } from './helpers/until.js';
import { startReceiver, type Receiver } from './helpers/webhook-receiver.js';

let app: App;
let url: string;
let admin: SeededKey;
let rx: Receiver;
/** What the test's DNS says: names chosen by each test. */
const dns = new Map<string, string[]>([
  ['loopback.example.test', ['127.0.0.1']],
  ['metadata.example.test', ['169.254.169.254']],
  ['mixed.example.test', ['93.184.216.34', '10.1.2.3']],
  ['v6-loopback.example.test', ['::1']],
  ['public.example.test', ['93.184.216.34']],
]);

beforeAll(async () => {
  url = (await testDatabase()).url;
  rx = await startReceiver();
  app = await buildTestApp({
    env: { WEBHOOK_SECRET_KEY: randomBytes(32).toString('hex'), WEBHOOK_POLL_MS: '50', WEBHOOK_TIMEOUT_MS: '1000', WEBHOOK_RETRY_SCHEDULE: '1h' },
    resolve: async (host) => {
      const a = dns.get(host);
      if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return a;
    },
  });
  admin = await seedKey(app, { name: 'ssrf-admin', roleIds: [ADMIN] });
});
afterAll(async () => {
  await rx?.close();
});

const create = (target: string) =>
  app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: { ...admin.headers, ...json }, payload: { url: target, eventTypes: ['apikey.created'] } });

describe('refused when saved', () => {
  const forbidden: Array<[string, RegExp]> = [
    ['https://127.0.0.1/hook', /127\.0\.0\.1, a loopback address/],
    ['https://2130706433/hook', /127\.0\.0\.1, a loopback address/], // decimal
    ['https://0x7f000001/hook', /127\.0\.0\.1, a loopback address/], // hex
    ['https://017700000001/hook', /127\.0\.0\.1, a loopback address/], // octal
    ['https://127.1/hook', /127\.0\.0\.1, a loopback address/], // short form
    ['https://[::1]/hook', /::1, a loopback address/],
    ['https://[::ffff:127.0.0.1]/hook', /::ffff:7f00:1, a loopback address/], // IPv4-mapped
    ['https://[::ffff:a9fe:a9fe]/hook', /link-local/], // mapped metadata
    ['https://[0:0:0:0:0:0:0:1]/hook', /a loopback address/],
    ['https://0.0.0.0/hook', /unspecified/],
    ['https://10.0.0.1/hook', /a private address/],
    ['https://172.16.5.4/hook', /a private address/],
    ['https://192.168.1.1/hook', /a private address/],
    ['https://169.254.169.254/latest/meta-data', /link-local address \(cloud metadata/],
    ['https://100.100.100.200/hook', /carrier-grade NAT/], // Alibaba's metadata
    ['https://[fd00:ec2::254]/hook', /unique local/], // AWS's IPv6 metadata
    ['https://[fe80::1]/hook', /link-local/],
    ['https://[64:ff9b::7f00:1]/hook', /special-purpose address \(rfc6052\)/], // NAT64 of 127.0.0.1
    ['https://[2002:7f00:1::]/hook', /special-purpose address \(6to4\)/],
    ['https://[::7f00:1]/hook', /outside 2000::\/3/], // IPv4-compatible
    ['https://224.0.0.1/hook', /multicast/],
    ['https://255.255.255.255/hook', /broadcast/],
    ['https://localhost/hook', /localhost, a loopback address/],
    ['https://api.localhost/hook', /a loopback address/],
    ['https://loopback.example.test/hook', /loopback\.example\.test resolves to 127\.0\.0\.1, a loopback address/],
    ['https://v6-loopback.example.test/hook', /resolves to ::1, a loopback address/],
    ['https://metadata.example.test/hook', /resolves to 169\.254\.169\.254, a link-local/],
    ['https://mixed.example.test/hook', /resolves to 10\.1\.2\.3, a private address/], // one bad address among good ones
    ['http://public.example.test/hook', /must be an https:\/\/ URL \(plain http only with WEBHOOK_ALLOW_HTTP=true\)/],
  ];
  it.each(forbidden)('%s', async (target, rule) => {
    const res = await create(target);
    expect(res.statusCode, res.body).toBe(400);
    const problem = res.json();
    expect(problem.code).toBe('VALIDATION_FAILED');
    expect(problem.errors[0].field).toBe('url');
    expect(problem.errors[0].message).toMatch(rule);
    expect(await sql(url, 'SELECT 1 FROM webhooks WHERE url = $1', [target])).toHaveLength(0);
  });

  it('accepts a public name, and one that does not resolve yet (checked again at delivery)', async () => {
    for (const target of ['https://public.example.test/hook', 'https://not-yet.example.test/hook', 'https://[2606:4700::1111]/hook', 'https://93.184.216.34/hook']) {
      const res = await create(target);
      expect(res.statusCode, `${target}: ${res.body}`).toBe(201);
      await app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${res.json().id}`, headers: admin.headers });
    }
  });

  it('refuses a change of URL to a forbidden one as well', async () => {
    const created = (await create('https://public.example.test/a')).json();
    const res = await app.inject({ method: 'PATCH', url: `/api/v1/webhooks/${created.id}`, headers: { ...admin.headers, ...json }, payload: { url: 'https://[::ffff:10.0.0.1]/b' } });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].message).toMatch(/a private address/);
    expect((await app.inject({ method: 'GET', url: `/api/v1/webhooks/${created.id}`, headers: admin.headers })).json().url).toBe('https://public.example.test/a');
    await app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${created.id}`, headers: admin.headers });
  });
});

describe('refused at delivery', () => {
  it('a name that resolves to loopback by the time of the attempt is never connected to (DNS rebinding)', async () => {
    dns.set('rebind.example.test', ['93.184.216.34']);
    const res = await create(`https://rebind.example.test:${rx.port}/hooks`);
    expect(res.statusCode).toBe(201);
    const hook = res.json();
    dns.set('rebind.example.test', ['127.0.0.1']);
    await seedKey(app, { name: 'ssrf-rebind' });
    const log = async () => (await app.inject({ method: 'GET', url: `/api/v1/webhooks/${hook.id}/deliveries`, headers: admin.headers })).json();
    await until(async () => (await log())[0]?.attempts.length === 1, 10_000);
    const [d] = await log();
    expect(d.status).toBe('pending'); // retried later: DNS may change back
    expect(d.attempts[0]).toMatchObject({ statusCode: null, error: 'rebind.example.test resolves to 127.0.0.1, a loopback address: webhooks may not reach it' });
    expect(rx.received).toHaveLength(0); // the receiver on 127.0.0.1 never saw a connection
  });

  it('the same rules hold for every address form, however it is written', () => {
    const policy = { allowHttp: false, allowedNetworks: [] };
    for (const ip of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '10.0.0.1', '169.254.169.254', 'fd00::1', 'fe80::1%eth0']) expect(forbiddenKind(ip), ip).not.toBeNull();
    for (const ip of ['93.184.216.34', '2606:4700::1111']) expect(forbiddenKind(ip), ip).toBeNull();
    expect(urlProblem('https://127.000.000.001/', policy)).toMatch(/loopback/);
    expect(urlProblem('https://[::ffff:7f00:1]/', policy)).toMatch(/loopback/);
    // WEBHOOK_ALLOWED_NETWORKS opens exactly its blocks.
    expect(urlProblem('https://10.20.0.5/', { allowHttp: false, allowedNetworks: ['10.20.0.0/16'] })).toBeNull();
    expect(urlProblem('https://10.21.0.5/', { allowHttp: false, allowedNetworks: ['10.20.0.0/16'] })).toMatch(/private/);
  });
});
