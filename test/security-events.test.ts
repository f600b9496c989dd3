// Failed authentications become aggregated security events: few rows, no attacker-chosen keys.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import pg from 'pg';
import { buildTestApp, freshDatabase, testDatabase } from './helpers/app.js';
import { ADMIN, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let reader: SeededKey;
let dbUrl: string;

beforeAll(async () => {
  app = await buildTestApp({ env: { SECURITY_EVENTS_FLUSH_MS: '600000' } });
  dbUrl = (await testDatabase()).url;
  reader = await seedKey(app, { name: 'events-reader', roleIds: [READER] });
});

const fail = (key: string | undefined, remoteAddress = '198.51.100.7') =>
  app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: key ? { 'x-api-key': key } : {}, remoteAddress });
const randomKey = () => `jim_ak_${randomBytes(32).toString('hex')}`;
const rows = () => sql<{ key_prefix: string; ip: string; reason: string; count: number }>(dbUrl, 'SELECT key_prefix, ip, reason, count FROM security_events ORDER BY reason, ip, key_prefix');

describe('security events', () => {
  it('10,000 failures with random keys from one address make one "unknown" row per window', async () => {
    await sql(dbUrl, 'DELETE FROM security_events');
    for (let i = 0; i < 10_000; i++) await fail(randomKey(), '203.0.113.9');
    await app.services.securityEvents.flush();
    const got = await sql<{ key_prefix: string; ip: string; reason: string; n: number; rows: number }>(
      dbUrl,
      "SELECT key_prefix, ip, reason, sum(count)::int AS n, count(*)::int AS rows FROM security_events WHERE ip = '203.0.113.9' GROUP BY 1, 2, 3",
    );
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ key_prefix: 'unknown', ip: '203.0.113.9', reason: 'API_KEY_INVALID', n: 10_000 });
    expect(got[0].rows).toBeLessThanOrEqual(2); // 1, or 2 if a 15-minute boundary passed mid-test
    console.log(`[security events] 10,000 failed requests → ${got[0].rows} row(s)`);
  });

  it('records the prefix only when it matches a stored key, per reason', async () => {
    await sql(dbUrl, 'DELETE FROM security_events');
    const disabled = await seedKey(app, { roleIds: [READER], isEnabled: false });
    await fail(undefined);
    await fail(`${reader.secret.slice(0, 16)}${'0'.repeat(56)}`); // wrong secret, real prefix
    await fail(`${reader.secret.slice(0, 16)}${'1'.repeat(56)}`);
    await fail(disabled.secret);
    await fail('garbage');
    await app.services.securityEvents.flush();
    expect(await rows()).toEqual([
      { key_prefix: disabled.secret.slice(0, 16), ip: '198.51.100.7', reason: 'API_KEY_DISABLED', count: 1 },
      { key_prefix: reader.secret.slice(0, 16), ip: '198.51.100.7', reason: 'API_KEY_INVALID', count: 2 },
      { key_prefix: 'unknown', ip: '198.51.100.7', reason: 'API_KEY_INVALID', count: 1 },
      { key_prefix: 'unknown', ip: '198.51.100.7', reason: 'UNAUTHENTICATED', count: 1 },
    ]);
  });

  it('counts IPv6 clients per /64, and stays bounded in memory however many addresses there are', async () => {
    await sql(dbUrl, 'DELETE FROM security_events');
    const small = await buildTestApp({ env: { SECURITY_EVENTS_MAX_BUCKETS: '10', SECURITY_EVENTS_FLUSH_MS: '600000' } });
    for (let i = 0; i < 50; i++) await small.inject({ method: 'GET', url: '/api/v1/userinfo', remoteAddress: `2001:db8:5:6::${i.toString(16)}` });
    for (let i = 0; i < 100; i++) await small.inject({ method: 'GET', url: '/api/v1/userinfo', remoteAddress: `192.0.2.${i}` });
    expect(small.services.securityEvents.pending).toBeLessThanOrEqual(11);
    await small.close(); // flushed at shutdown
    const got = await sql<{ ip: string; count: number }>(dbUrl, 'SELECT ip, count FROM security_events ORDER BY ip');
    expect(got.find((r) => r.ip === '2001:db8:5:6::/64')?.count).toBe(50);
    expect(got.reduce((n, r) => n + r.count, 0)).toBe(150);
    expect(got.find((r) => r.ip === 'overflow')?.count).toBeGreaterThan(80);
    expect(got.length).toBeLessThanOrEqual(11);
  });

  it('stays bounded while the database holds the table locked (writes hang, then fail), and loses no count', async () => {
    const url = await freshDatabase();
    const slow = await buildTestApp({
      databaseUrl: url,
      env: { SECURITY_EVENTS_MAX_BUCKETS: '100', SECURITY_EVENTS_FLUSH_MS: '100', DB_QUERY_TIMEOUT_MS: '400', LAST_USED_FLUSH_MS: '100' },
    });
    const recorder = slow.services.securityEvents;
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE security_events IN ACCESS EXCLUSIVE MODE');
    let sent = 0;
    let peak = 0;
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      // Keyless requests from ever new addresses: each would be a bucket of its own.
      for (let i = 0; i < 40; i++, sent++) recorder.record(undefined, `10.${(sent >> 16) & 255}.${(sent >> 8) & 255}.${sent & 255}`, 'UNAUTHENTICATED');
      peak = Math.max(peak, recorder.pending);
      await new Promise((r) => setTimeout(r, 10));
    }
    await locker.query('ROLLBACK');
    await locker.end();
    // Regular buckets never pass the bound; one overflow bucket per reason and window comes on top.
    expect(peak).toBeGreaterThan(90);
    expect(peak).toBeLessThanOrEqual(100 + 2);
    await recorder.flush();
    await recorder.flush();
    const [totals] = await sql<{ rows: number; n: number; overflow: number }>(
      url,
      "SELECT count(*)::int AS rows, sum(count)::int AS n, sum(count) FILTER (WHERE ip = 'overflow')::int AS overflow FROM security_events",
    );
    expect(totals.n).toBe(sent); // every failure counted once, none lost or doubled by the retries
    expect(totals.rows).toBeLessThanOrEqual(102);
    expect(totals.overflow).toBeGreaterThan(sent - 200);
  });

  it('adds up counts written by several instances into one row', async () => {
    await sql(dbUrl, 'DELETE FROM security_events');
    const other = await buildTestApp({ env: { SECURITY_EVENTS_FLUSH_MS: '600000' } });
    for (const a of [app, other]) {
      for (let i = 0; i < 3; i++) await a.inject({ method: 'GET', url: '/api/v1/userinfo', remoteAddress: '198.51.100.99' });
      await a.services.securityEvents.flush();
    }
    expect(await rows()).toEqual([{ key_prefix: 'unknown', ip: '198.51.100.99', reason: 'UNAUTHENTICATED', count: 6 }]);
  });

  it('GET /api/v1/security-events: newest first, filters, paging, audit.read', async () => {
    await sql(dbUrl, 'DELETE FROM security_events');
    await sql(
      dbUrl,
      `INSERT INTO security_events (window_start, key_prefix, ip, reason, count, first_seen_at, last_seen_at) VALUES
       ('2030-01-01T00:00:00Z', 'unknown', '10.0.0.1', 'API_KEY_INVALID', 5, '2030-01-01T00:01:00Z', '2030-01-01T00:10:00Z'),
       ('2030-01-01T00:15:00Z', 'unknown', '10.0.0.2', 'UNAUTHENTICATED', 2, '2030-01-01T00:16:00Z', '2030-01-01T00:17:00Z'),
       ('2030-01-01T00:30:00Z', 'jim_ak_abcdefgh', '10.0.0.1', 'API_KEY_EXPIRED', 1, '2030-01-01T00:31:00Z', '2030-01-01T00:31:00Z')`,
    );
    const get = (q: string, key: SeededKey = reader) => app.inject({ method: 'GET', url: `/api/v1/security-events${q}`, headers: key.headers });
    const all = await get('');
    expect(all.statusCode).toBe(200);
    expect(all.json().map((e: { reason: string }) => e.reason)).toEqual(['API_KEY_EXPIRED', 'UNAUTHENTICATED', 'API_KEY_INVALID']);
    expect(all.json()[2]).toEqual({
      windowStart: '2030-01-01T00:00:00.000Z',
      keyPrefix: 'unknown',
      ip: '10.0.0.1',
      reason: 'API_KEY_INVALID',
      count: 5,
      firstSeenAt: '2030-01-01T00:01:00.000Z',
      lastSeenAt: '2030-01-01T00:10:00.000Z',
    });
    expect((await get('?ip=10.0.0.1')).json()).toHaveLength(2);
    expect((await get('?reason=UNAUTHENTICATED')).json()).toHaveLength(1);
    expect((await get('?from=2030-01-01T00:15:30Z')).json()).toHaveLength(2);
    expect((await get('?to=2030-01-01T00:15:30Z')).json()).toHaveLength(1);
    expect((await get('?reason=NOPE')).statusCode).toBe(400);
    const seen: string[] = [];
    let next: string | null = '/api/v1/security-events?limit=2';
    while (next) {
      const res = await app.inject({ method: 'GET', url: next, headers: reader.headers });
      seen.push(...res.json().map((e: { reason: string }) => e.reason));
      const link = res.headers.link as string | undefined;
      next = link ? /^<([^>]+)>/.exec(link)![1] : null;
    }
    expect(seen).toEqual(['API_KEY_EXPIRED', 'UNAUTHENTICATED', 'API_KEY_INVALID']);
    const none = await seedKey(app, { roleIds: [] });
    expect((await get('', none)).statusCode).toBe(403);
  });

  it('prunes events past the retention period', async () => {
    await sql(
      dbUrl,
      `INSERT INTO security_events (window_start, key_prefix, ip, reason, count, first_seen_at, last_seen_at) VALUES
       (now() - interval '400 days', 'unknown', '10.9.9.9', 'API_KEY_INVALID', 1, now() - interval '400 days', now() - interval '400 days'),
       (now() - interval '10 days', 'unknown', '10.9.9.8', 'API_KEY_INVALID', 1, now() - interval '10 days', now() - interval '10 days')`,
    );
    await app.services.securityEvents.prune();
    const left = await sql<{ ip: string }>(dbUrl, "SELECT ip FROM security_events WHERE ip LIKE '10.9.9.%'");
    expect(left).toEqual([{ ip: '10.9.9.8' }]);
  });

  it('is readable by an Administrator too', async () => {
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    expect((await app.inject({ method: 'GET', url: '/api/v1/security-events?limit=1', headers: admin.headers })).statusCode).toBe(200);
  });
});
