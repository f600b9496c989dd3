// A wrong-secret flood with the limits at work: argon2 spent on guesses is bounded per prefix
// whatever the number of addresses, atomically across instances sharing Redis; legitimate
// traffic keeps priority (cache hits never wait, clean first uses go first); addresses are
// grouped as the IPv4 client they carry; failures are answered after the delay.
import type net from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { App } from '../src/app.js';
import { createVerificationQueue, SuspectRefused } from '../src/auth/verification-queue.js';
import { clientNetwork } from '../src/lib/client-ip.js';
import { buildTestApp } from './helpers/app.js';
import { countingHasher, redisAnswers } from './helpers/auth-load.js';
import { READER, seedKey } from './helpers/keys.js';

const LIMITS = { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_KEY_MAX: '100000', RATE_LIMIT_IP_MAX: '1000', RATE_LIMIT_PREFIX_MAX: '10', RATE_LIMIT_WINDOW_MS: '60000' };
const addr = () => `10.${randomInt(1, 250)}.${randomInt(1, 250)}.${randomInt(1, 250)}`;
const me = (app: App, headers: Record<string, string>, remoteAddress = addr()) => app.inject({ method: 'GET', url: '/api/v1/userinfo', headers, remoteAddress });
const guess = (secret: string) => ({ 'x-api-key': `${secret.slice(0, 16)}${randomBytes(28).toString('hex')}` });

async function until(condition: () => boolean, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('wrong secrets for one prefix from many addresses', () => {
  it('cost at most the prefix budget of argon2; the key itself, cached, still answers; another prefix is unaffected', async () => {
    const { hasher, verifies } = countingHasher();
    const app = await buildTestApp({ env: LIMITS, hasher });
    const target = await seedKey(app, { roleIds: [READER] });
    const other = await seedKey(app, { roleIds: [READER] });
    expect((await me(app, target.headers)).statusCode).toBe(200); // cached
    const before = verifies();
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await me(app, guess(target.secret))).statusCode); // 60 addresses
    expect(verifies() - before).toBe(10);
    expect(new Set(statuses)).toEqual(new Set([401]));
    expect((await me(app, target.headers)).statusCode).toBe(200);
    const otherBefore = verifies();
    expect((await me(app, other.headers)).statusCode).toBe(200); // first use of a clean prefix: verified at once
    expect(verifies() - otherBefore).toBe(1);
  });

  it('the guesses spread over IPv6 /64s, NAT64 and IPv4-mapped forms change nothing', async () => {
    const { hasher, verifies } = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, TRUST_PROXY: '127.0.0.1' }, hasher });
    const target = await seedKey(app, { roleIds: [READER] });
    const forms = (i: number) => [`2001:db8:${i.toString(16)}::1`, `64:ff9b::198.51.100.${i % 250}`, `::ffff:203.0.113.${i % 250}`][i % 3];
    for (let i = 0; i < 45; i++) await me(app, { ...guess(target.secret), 'x-forwarded-for': forms(i) }, '127.0.0.1');
    expect(verifies()).toBe(10);
  });

  it('an IPv4 client is one network in any of the IPv6 forms that carry it; an IPv6 client is its /64', async () => {
    const app = await buildTestApp({ env: { ...LIMITS, TRUST_PROXY: '127.0.0.1', RATE_LIMIT_IP_MAX: '3' } });
    const unknown = () => ({ 'x-api-key': `jim_ak_${randomBytes(32).toString('hex')}` });
    const from = (ip: string) => me(app, { ...unknown(), 'x-forwarded-for': ip }, '127.0.0.1');
    const v4 = `203.0.113.${randomInt(1, 250)}`;
    const [a, b, c, d] = v4.split('.').map(Number);
    const hex = `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
    const statuses = [];
    for (const ip of [`::ffff:${v4}`, `::ffff:${hex}`, `64:ff9b::${v4}`, v4]) statuses.push((await from(ip)).statusCode);
    expect(statuses).toEqual([401, 401, 401, 429]);
    const net64 = `2001:db8:${randomInt(1, 0xffff).toString(16)}:${randomInt(1, 0xffff).toString(16)}`;
    const v6 = [];
    for (const host of ['::1', ':1:2:3:4', '::ffff', ':aaaa::1']) v6.push((await from(`${net64}${host}`)).statusCode);
    expect(v6).toEqual([401, 401, 401, 429]);
    expect((await from(`${net64.replace(/:[0-9a-f]+$/, ':0')}::1`)).statusCode).toBe(401); // the next /64 over
  });

  it('a prefix whose budget is spent is refused here without reading the database again', async () => {
    const { hasher } = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, RATE_LIMIT_PREFIX_MAX: '2' }, hasher });
    const target = await seedKey(app, { roleIds: [READER] });
    for (let i = 0; i < 3; i++) await me(app, guess(target.secret));
    const reads = vi.spyOn(app.prisma, '$queryRaw');
    for (let i = 0; i < 5; i++) expect((await me(app, guess(target.secret))).statusCode).toBe(401);
    expect(reads).not.toHaveBeenCalled();
    reads.mockRestore();
  });

  it("a network out of budget retrying a key whose prefix has a failure gets 429 each time, but never spends that prefix's budget", async () => {
    const { hasher, verifies } = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, RATE_LIMIT_IP_MAX: '3', RATE_LIMIT_PREFIX_MAX: '5' }, hasher });
    const key = await seedKey(app, { roleIds: [READER] });
    const nat = addr();
    for (let i = 0; i < 3; i++) await me(app, {}, nat); // a neighbour's script spends the network's budget
    expect((await me(app, guess(key.secret))).statusCode).toBe(401); // one failure for the prefix, elsewhere
    for (let i = 0; i < 20; i++) expect((await me(app, key.headers, nat)).statusCode).toBe(429);
    const before = verifies();
    expect((await me(app, key.headers)).statusCode).toBe(200); // from elsewhere: the prefix is not locked
    expect(verifies() - before).toBe(1);
  });

  it('many first uses at once from one network with no failures all go through the clean lane', async () => {
    const counter = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, ARGON2_MAX_CONCURRENCY: '1', ARGON2_SUSPECT_QUEUE: '0' }, hasher: counter.hasher });
    const keys = await Promise.all(Array.from({ length: 8 }, () => seedKey(app, { roleIds: [READER] })));
    const nat = addr();
    const results = await Promise.all(keys.map((k) => me(app, k.headers, nat)));
    expect(results.map((r) => r.statusCode)).toEqual(Array(8).fill(200)); // none was sent to a suspect lane (it holds nothing)
    expect(app.services.verifications.suspectRuns).toBe(0);
  });

  it('a valid key whose prefix is under attack, not cached here, gets through once the window ends', async () => {
    const { hasher, verifies } = countingHasher();
    const env = { ...LIMITS, RATE_LIMIT_PREFIX_MAX: '3', RATE_LIMIT_WINDOW_MS: '1000' };
    const app = await buildTestApp({ env, hasher });
    const target = await seedKey(app, { roleIds: [READER] });
    for (let i = 0; i < 5; i++) expect((await me(app, guess(target.secret))).statusCode).toBe(401);
    const spent = verifies();
    const refused = await me(app, target.headers);
    expect(refused.statusCode).toBe(401); // refused unverified, like the guesses: the documented trade-off
    expect(refused.json().code).toBe('API_KEY_INVALID');
    expect(verifies()).toBe(spent);
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await me(app, target.headers)).statusCode).toBe(200);
  });

  it('a valid key from an address out of budget answers 200; that address gets 429 for a prefix under attack', async () => {
    const { hasher } = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, RATE_LIMIT_IP_MAX: '3' }, hasher });
    const attacked = await seedKey(app, { roleIds: [READER] });
    const ip = addr();
    for (let i = 0; i < 5; i++) await me(app, guess(attacked.secret), ip);
    expect((await me(app, guess(attacked.secret), ip)).statusCode).toBe(429);
    const fresh = await seedKey(app, { roleIds: [READER] });
    const res = await me(app, fresh.headers, ip);
    expect(res.statusCode).toBe(200);
    expect(res.json().id).toBe(fresh.id);
  });

  it('concurrent first uses of one valid secret share one verification and one reservation', async () => {
    const { hasher, verifies } = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, RATE_LIMIT_PREFIX_MAX: '1' }, hasher });
    const key = await seedKey(app, { roleIds: [READER] });
    const results = await Promise.all(Array.from({ length: 20 }, () => me(app, key.headers)));
    expect(results.map((r) => r.statusCode)).toEqual(Array(20).fill(200));
    expect(verifies()).toBe(1);
  });
});

describe('legitimate traffic keeps priority', () => {
  it('a cache hit never waits for argon2, even with every slot held by guesses', async () => {
    const counter = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, ARGON2_MAX_CONCURRENCY: '1', ARGON2_MAX_QUEUE: '4' }, hasher: counter.hasher });
    const key = await seedKey(app, { roleIds: [READER] });
    expect((await me(app, key.headers)).statusCode).toBe(200);
    const release = counter.hold();
    const guesses = Array.from({ length: 6 }, () => me(app, guess(key.secret)));
    await until(() => app.services.verifications.running === 1);
    expect((await me(app, key.headers)).statusCode).toBe(200); // answered while argon2 is held
    release();
    expect((await Promise.all(guesses)).map((r) => r.statusCode)).toEqual(Array(6).fill(401));
  });

  it('a first use of a clean prefix is verified before waiting guesses for a prefix under attack', async () => {
    const counter = countingHasher();
    const app = await buildTestApp({ env: { ...LIMITS, ARGON2_MAX_CONCURRENCY: '1', ARGON2_MAX_QUEUE: '16' }, hasher: counter.hasher });
    const attacked = await seedKey(app, { roleIds: [READER] });
    const fresh = await seedKey(app, { roleIds: [READER] });
    const release = counter.hold();
    const order: string[] = [];
    const guesses = Array.from({ length: 5 }, (_, i) => me(app, guess(attacked.secret)).then((r) => (order.push(`guess${i}`), r)));
    await until(() => app.services.verifications.waiting === 4); // one runs, four wait in the prefix lane
    const first = me(app, fresh.headers).then((r) => (order.push('fresh'), r));
    await new Promise((r) => setTimeout(r, 20));
    release();
    expect((await first).statusCode).toBe(200);
    await Promise.all(guesses);
    expect(order.indexOf('fresh')).toBeLessThanOrEqual(1); // after the guess already running, at most
  });
});

describe('the verification queue', () => {
  afterEach(() => vi.useRealTimers());

  it('suspect lanes take at most their share of argon2 time, and a full one refuses guesses first', async () => {
    vi.useFakeTimers();
    let now = 0;
    const q = createVerificationQueue({ concurrency: 1, queue: 2, suspectShare: 0.5, now: () => now });
    const started: string[] = [];
    const task = (name: string, ms: number) => () =>
      new Promise<string>((resolve) => {
        started.push(name);
        setTimeout(() => {
          now += ms;
          resolve(name);
        }, ms);
      });
    const a = q.run(task('a', 600), 'prefix'); // allowance 500 ms: starts at once, overspends by 100
    const b = q.run(task('b', 10), 'prefix');
    const c = q.run(task('c', 10), 'prefix');
    await expect(q.run(task('d', 10), 'prefix')).rejects.toBeInstanceOf(SuspectRefused); // lanes full
    const e = q.run(task('e', 10), 'address'); // takes the newest guess's place
    await expect(c).rejects.toBeInstanceOf(SuspectRefused);
    await vi.advanceTimersByTimeAsync(600);
    expect(await a).toBe('a');
    expect(started).toEqual(['a']); // in debt: nothing starts until the allowance refills
    const clean = q.run(task('clean', 10), 'clean');
    await vi.advanceTimersByTimeAsync(0);
    expect(started).toEqual(['a', 'clean']); // clean work never waits for the allowance
    await vi.advanceTimersByTimeAsync(10);
    expect(await clean).toBe('clean');
    now += 300; // refilled at 0.5 ms per ms
    await vi.advanceTimersByTimeAsync(500);
    expect(started).toEqual(['a', 'clean', 'e', 'b']); // the address lane before the prefix lane
    expect(await Promise.all([b, e])).toEqual(['b', 'e']);
  });
});

describe('client networks', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['::ffff:cb00:7107', '203.0.113.7'],
    ['64:ff9b::203.0.113.7', '203.0.113.7'],
    ['64:ff9b::cb00:7107', '203.0.113.7'],
    ['::203.0.113.7', '203.0.113.7'],
    ['2002:cb00:7107::1', '203.0.113.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:DB8:1:2::9', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['not-an-ip', 'invalid'],
  ])('%s counts as %s', (ip, network) => {
    expect(clientNetwork(ip)).toBe(network);
  });
});

describe('the failure delay', () => {
  it('answers a wrong key no sooner than AUTH_FAILURE_DELAY_MS after it arrived; a request without a key is not delayed by it', async () => {
    const app = await buildTestApp({ env: { ...LIMITS, AUTH_FAILURE_DELAY_MS: '300' } });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
    const t = performance.now();
    const res = await fetch(`${base}/api/v1/userinfo`, { headers: { 'x-api-key': `jim_ak_${randomBytes(32).toString('hex')}` } });
    expect(res.status).toBe(401);
    expect(performance.now() - t).toBeGreaterThanOrEqual(295);
    const started = performance.now();
    const bare = await app.inject({ method: 'GET', url: '/api/v1/userinfo' });
    expect(bare.statusCode).toBe(401);
    expect(performance.now() - started).toBeLessThan(250); // not held for the 300 ms
  });
});

const redis = await redisAnswers();
if (!redis) console.log('[flood] no Redis at 127.0.0.1:6379: the two-instance test is skipped');
describe.runIf(redis)('two instances sharing Redis', () => {
  it('33 concurrent wrong secrets from one address with a budget of 30 cost at most 30 argon2 calls in all', async () => {
    const env = { ...LIMITS, RATE_LIMIT_IP_MAX: '30', RATE_LIMIT_PREFIX_MAX: '1000', REDIS_URL: 'redis://127.0.0.1:6379' };
    const one = countingHasher();
    const two = countingHasher();
    const a = await buildTestApp({ env, hasher: one.hasher });
    const b = await buildTestApp({ env, hasher: two.hasher });
    const target = await seedKey(a, { roleIds: [READER] });
    const ip = addr();
    const results = await Promise.all(Array.from({ length: 33 }, (_, i) => me(i % 2 ? b : a, guess(target.secret), ip)));
    expect(one.verifies() + two.verifies()).toBeLessThanOrEqual(30);
    expect(results.filter((r) => r.statusCode === 429).length).toBeGreaterThanOrEqual(3);
    expect(results.every((r) => r.statusCode === 401 || r.statusCode === 429)).toBe(true);
  });
});

describe('window counters in memory', () => {
  it('renew an expired counter at the end of the line, and beyond the bound drop the oldest first', async () => {
    const { createMemoryCounters } = await import('../src/lib/window-counters.js');
    let now = 0;
    const c = createMemoryCounters(1_000, 3, () => now);
    c.incrOne('a');
    now = 10;
    c.incrOne('b');
    now = 20;
    c.incrOne('c');
    now = 1_005; // a has expired, b and c not yet
    expect(c.incrOne('a')).toEqual({ count: 1, resetMs: 1_000 }); // a new window, moved behind c
    c.incrOne('d'); // full: b, now the oldest, goes
    expect(c.size).toBe(3);
    expect(c.incr([], ['a', 'b', 'c', 'd']).reads).toEqual([1, 0, 1, 1]);
    c.decr(['a', 'a']);
    expect(c.incr([], ['a']).reads).toEqual([0]); // never below zero
  });
});
