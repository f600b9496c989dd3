// Per-key usage: every authentication and verification of a known key counted per minute and
// outcome, in memory, written in batches that add up across instances; rolled up to hours and
// days by the scheduler, pruned after the retention; read per key and as the busiest keys.
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { buildTestApp, freshDatabase } from './helpers/app.js';
import { ADMIN, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';
import type { App } from '../src/app.js';

const VERIFIER = 5;
const ZERO = { VALID: 0, DISABLED: 0, EXPIRED: 0, INSUFFICIENT_PERMISSIONS: 0, RATE_LIMITED: 0, IP_NOT_ALLOWED: 0 };
let offset = 0; // how far the app's clock is from the real one
const clock = () => new Date(Date.now() + offset);
afterEach(() => {
  offset = 0;
});

const usageRows = (url: string, id?: string) =>
  sql<{ api_key_id: string; bucket_start: Date; granularity: string; valid: string; disabled: string; expired: string; insufficient_permissions: string; rate_limited: string; ip_not_allowed: string }>(
    url,
    `SELECT * FROM key_usage ${id ? 'WHERE api_key_id = $1' : ''} ORDER BY bucket_start, granularity`,
    id ? [id] : [],
  );

async function create(app: App, admin: SeededKey, body: Record<string, unknown>) {
  const res = await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: admin.headers, payload: body });
  expect(res.statusCode, res.body).toBe(201);
  return { id: res.json().id as string, headers: { 'x-api-key': res.json().key as string } };
}

const usageOf = async (app: App, headers: object, id: string, query = '') => app.inject({ method: 'GET', url: `/api/v1/apikeys/${id}/usage${query}`, headers: headers as Record<string, string> });

describe('usage counting', () => {
  it('counts each outcome of a known key, never a wrong secret, and writes nothing until the batch', async () => {
    const url = await freshDatabase();
    const app = await buildTestApp({ databaseUrl: url, env: { USAGE_FLUSH_MS: '600000', RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_IP_MAX: '1000', RATE_LIMIT_PREFIX_MAX: '1000' } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const reader = await seedKey(app, { roleIds: [READER] });
    const verifier = await seedKey(app, { roleIds: [VERIFIER] });
    const disabled = await seedKey(app, { roleIds: [READER], isEnabled: false });
    const fenced = await create(app, admin, { name: 'fenced', roleIds: [READER], allowedCidrs: ['198.51.100.0/24'] });
    const limited = await create(app, admin, { name: 'limited', roleIds: [READER], rateLimit: { limit: 2, windowSeconds: 60 } });
    const expired = await seedKey(app, { roleIds: [READER] });
    await sql(url, "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1", [expired.id]);

    const get = (headers: object, path = '/api/v1/userinfo', remoteAddress = '203.0.113.9') => app.inject({ method: 'GET', url: path, headers: headers as Record<string, string>, remoteAddress });
    for (let i = 0; i < 3; i++) expect((await get(reader.headers)).statusCode).toBe(200);
    expect((await get(reader.headers, '/api/v1/apikeys')).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/api/v1/apikeys', headers: reader.headers, payload: { name: 'x', roleIds: [] } })).statusCode).toBe(403);
    expect((await get(disabled.headers)).json().code).toBe('API_KEY_DISABLED');
    expect((await get(expired.headers)).json().code).toBe('API_KEY_EXPIRED');
    expect((await get(fenced.headers)).statusCode).toBe(403);
    expect((await get(fenced.headers, '/api/v1/userinfo', '198.51.100.4')).statusCode).toBe(200);
    for (let i = 0; i < 3; i++) await get(limited.headers);
    expect((await get(limited.headers)).statusCode).toBe(429);
    // A wrong secret for a real prefix, and garbage: no key's use.
    expect((await get({ 'x-api-key': reader.headers['x-api-key'].slice(0, -4) + 'AAAA' })).statusCode).toBe(401);
    expect((await get({ 'x-api-key': 'nonsense' })).statusCode).toBe(401);
    // A verification counts for the presented key (and the gateway's own request for the gateway).
    const verify = (key: string) => app.inject({ method: 'POST', url: '/api/v1/apikeys/verify', headers: verifier.headers, payload: { key, requiredPermissions: ['apikeys.write'], clientIp: '203.0.113.50' } });
    expect((await verify(reader.headers['x-api-key'])).json().code).toBe('INSUFFICIENT_PERMISSIONS');
    expect((await verify(disabled.headers['x-api-key'])).json().code).toBe('DISABLED');

    expect(await usageRows(url)).toEqual([]); // nothing written per request
    expect(app.services.usage.pending).toBeGreaterThan(0);
    await app.services.usage.flush();
    expect(app.services.usage.pending).toBe(0);

    const counts = async (id: string) => {
      const res = await usageOf(app, admin.headers, id);
      expect(res.statusCode, res.body).toBe(200);
      return res.json().totals.counts;
    };
    expect(await counts(reader.id)).toEqual({ ...ZERO, VALID: 4, INSUFFICIENT_PERMISSIONS: 2 });
    expect(await counts(disabled.id)).toEqual({ ...ZERO, DISABLED: 2 });
    expect(await counts(expired.id)).toEqual({ ...ZERO, EXPIRED: 1 });
    expect(await counts(fenced.id)).toEqual({ ...ZERO, VALID: 1, IP_NOT_ALLOWED: 1 });
    expect(await counts(limited.id)).toEqual({ ...ZERO, VALID: 2, RATE_LIMITED: 2 });
    expect(await counts(verifier.id)).toEqual({ ...ZERO, VALID: 2 });
    // One row per key and minute (the flush may straddle a minute: then two).
    const rows = await usageRows(url, reader.id);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows.every((r) => r.granularity === 'minute' && r.bucket_start.getUTCSeconds() === 0)).toBe(true);
    expect(rows.reduce((n, r) => n + Number(r.valid), 0)).toBe(4);
  });

  it('answers every bucket of the range, aligned in UTC, with totals, and refuses what it cannot answer', async () => {
    const app = await buildTestApp({ env: { USAGE_FLUSH_MS: '600000' } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const reader = await seedKey(app, { roleIds: [READER] });
    const used = Math.floor(Date.now() / 60_000) * 60_000;
    await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: reader.headers });
    const now = Date.now();
    const res = await usageOf(app, admin.headers, reader.id, `?interval=minute&from=${new Date(now - 10 * 60_000).toISOString()}&to=${new Date(now + 1).toISOString()}`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json();
    expect(body.interval).toBe('minute');
    expect(body.buckets.length).toBeGreaterThanOrEqual(11);
    expect(body.buckets.length).toBeLessThanOrEqual(12);
    expect(Date.parse(body.from) % 60_000).toBe(0);
    expect(body.buckets[0].start).toBe(body.from);
    // The use's minute (a minute boundary may fall between the clock read and the request: then the next).
    const counted = body.buckets.filter((b: { total: number }) => b.total > 0);
    expect(counted).toHaveLength(1);
    expect([used, used + 60_000]).toContain(Date.parse(counted[0].start));
    expect(counted[0]).toMatchObject({ total: 1, counts: { ...ZERO, VALID: 1 } });
    expect(body.totals).toEqual({ total: 1, counts: { ...ZERO, VALID: 1 } });
    // Defaults: the last 24 hours by hour.
    const hourly = (await usageOf(app, admin.headers, reader.id)).json();
    expect(hourly.interval).toBe('hour');
    expect(hourly.buckets.length).toBeGreaterThanOrEqual(24);
    expect(hourly.buckets.length).toBeLessThanOrEqual(25);

    const problem = async (query: string, status = 400, id = reader.id) => {
      const r = await usageOf(app, admin.headers, id, query);
      expect(r.statusCode, query).toBe(status);
      expect(r.headers['content-type']).toContain('application/problem+json');
      return r.json();
    };
    expect((await problem('?from=2026-12-02T10:00:00Z&to=2026-12-02T09:00:00Z')).detail).toBe('from must be earlier than to');
    const tooMany = await problem('?interval=minute&from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z');
    expect(tooMany.code).toBe('VALIDATION_FAILED');
    expect(tooMany.detail).toContain('at most 1500');
    expect((await problem('?interval=week')).detail).toContain('minute, hour, day');
    expect((await problem('?to=9999-12-31T23:59:59Z&interval=day')).errors).toEqual([{ field: 'to', message: 'must be at most a year from now' }]);
    expect((await problem('?from=yesterday')).errors[0].field).toBe('from');
    expect((await problem('?colour=red')).code).toBe('VALIDATION_FAILED');
    expect((await problem('', 404, '00000000-0000-4000-8000-000000000000')).code).toBe('API_KEY_NOT_FOUND');
    expect((await problem('', 400, 'not-a-guid')).code).toBe('VALIDATION_FAILED');
    // audit.read is needed: the Verifier role lacks it.
    const verifier = await seedKey(app, { roleIds: [VERIFIER] });
    const denied = await usageOf(app, verifier.headers, reader.id);
    expect(denied.statusCode).toBe(403);
    expect(denied.json().detail).toContain('audit.read');
    const top = await app.inject({ method: 'GET', url: '/api/v1/usage/top', headers: verifier.headers });
    expect(top.statusCode).toBe(403);
  });

  it('adds up the counts of several instances in the same rows', async () => {
    const url = await freshDatabase();
    const env = { USAGE_FLUSH_MS: '600000' };
    const one = await buildTestApp({ databaseUrl: url, env });
    const two = await buildTestApp({ databaseUrl: url, env });
    const admin = await seedKey(one, { roleIds: [ADMIN] });
    const reader = await seedKey(one, { roleIds: [READER] });
    // Both instances, both in the same minute (retried once if a minute boundary falls between).
    for (let attempt = 0; attempt < 2; attempt++) {
      await sql(url, 'DELETE FROM key_usage');
      const minute = Math.floor(Date.now() / 60_000);
      await Promise.all([
        ...Array.from({ length: 5 }, () => one.inject({ method: 'GET', url: '/api/v1/userinfo', headers: reader.headers })),
        ...Array.from({ length: 7 }, () => two.inject({ method: 'GET', url: '/api/v1/userinfo', headers: reader.headers })),
      ]);
      await Promise.all([one.services.usage.flush(), two.services.usage.flush()]);
      if (Math.floor(Date.now() / 60_000) === minute) break;
    }
    const rows = await usageRows(url, reader.id);
    expect(rows).toHaveLength(1);
    expect(Number(rows[0]!.valid)).toBe(12);
    const seen = (await usageOf(two, admin.headers, reader.id)).json();
    expect(seen.totals.counts.VALID).toBe(12);
  });

  it('keeps counts through a database that refuses them, and drops those of a key deleted meanwhile', async () => {
    const url = await freshDatabase();
    const app = await buildTestApp({ databaseUrl: url, env: { USAGE_FLUSH_MS: '600000', DB_QUERY_TIMEOUT_MS: '300' } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const kept = await seedKey(app, { roleIds: [READER] });
    const gone = await seedKey(app, { roleIds: [READER] });
    for (const k of [kept, kept, gone]) await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: k.headers });
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE key_usage IN ACCESS EXCLUSIVE MODE');
      await app.services.usage.flush(); // times out: the counts go back
      expect(app.services.usage.pending).toBe(2);
      // More uses of the same keys, and a second refused write: the counts add up, held once.
      for (const k of [kept, gone]) await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: k.headers });
      await app.services.usage.flush();
      expect(app.services.usage.pending).toBeGreaterThanOrEqual(2);
      expect(app.services.usage.pending).toBeLessThanOrEqual(4); // a minute boundary may fall between
      await locker.query('ROLLBACK');
    } finally {
      await locker.end();
    }
    await app.inject({ method: 'DELETE', url: `/api/v1/apikeys/${gone.id}`, headers: admin.headers });
    await app.services.usage.flush();
    expect(app.services.usage.pending).toBe(0);
    const rows = await usageRows(url);
    expect(rows.map((r) => [r.api_key_id, Number(r.valid)])).toEqual(
      expect.arrayContaining([[kept.id, expect.any(Number)]]),
    );
    expect(rows.filter((r) => r.api_key_id === kept.id).reduce((n, r) => n + Number(r.valid), 0)).toBe(3);
    expect(rows.some((r) => r.api_key_id === gone.id)).toBe(false);
  });

  it('rolls minutes into hours after 48 hours and hours into days after 90 days, keeping every count, and prunes after the retention', async () => {
    const url = await freshDatabase();
    const app = await buildTestApp({ databaseUrl: url, clock, env: { USAGE_FLUSH_MS: '600000', SCHEDULER_INTERVAL_MS: '86400000' } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const reader = await seedKey(app, { roleIds: [READER] });
    const use = async (n: number) => {
      for (let i = 0; i < n; i++) await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: reader.headers });
      await app.services.usage.flush();
    };
    const DAY = 86_400_000;
    offset = -500 * DAY; // beyond the retention (400 days)
    await use(1);
    offset = -120 * DAY;
    await use(2);
    offset = -3 * DAY;
    await use(3);
    offset = -3 * DAY + 5 * 60_000; // the same hour, most likely; another minute
    await use(4);
    offset = 0;
    await use(5);
    expect((await usageRows(url, reader.id)).every((r) => r.granularity === 'minute')).toBe(true);

    await app.services.scheduler.runOnce();
    const rows = await usageRows(url, reader.id);
    const by = (g: string) => rows.filter((r) => r.granularity === g);
    expect(by('minute').reduce((n, r) => n + Number(r.valid), 0)).toBe(5); // today's stay minutes
    expect(by('hour').reduce((n, r) => n + Number(r.valid), 0)).toBe(7);
    expect(by('hour').every((r) => r.bucket_start.getTime() % 3_600_000 === 0)).toBe(true);
    expect(by('day').map((r) => Number(r.valid))).toEqual([2]);
    expect(by('day')[0]!.bucket_start.getTime() % DAY).toBe(0);
    expect(rows.some((r) => r.bucket_start.getTime() < Date.now() - 400 * DAY)).toBe(false); // pruned
    // Running again changes nothing.
    await app.services.scheduler.runOnce();
    expect(await usageRows(url, reader.id)).toEqual(rows);

    // Read back at each interval: every count once, in the bucket holding its start.
    const all = `from=${new Date(Date.now() - 130 * DAY).toISOString()}&to=${new Date(Date.now() + 60_000).toISOString()}`;
    const daily = (await usageOf(app, admin.headers, reader.id, `?interval=day&${all}`)).json();
    expect(daily.totals.counts.VALID).toBe(14);
    expect(daily.buckets.filter((b: { total: number }) => b.total > 0).map((b: { total: number }) => b.total)).toEqual(expect.arrayContaining([2, 5]));
    const top = await app.inject({ method: 'GET', url: `/api/v1/usage/top?${all}`, headers: admin.headers });
    expect(top.json().keys[0]).toMatchObject({ keyId: reader.id, total: 14 });
  });

  it('lists the busiest keys first, with names and prefixes, limited', async () => {
    const app = await buildTestApp({ env: { USAGE_FLUSH_MS: '600000' } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const busy = await seedKey(app, { roleIds: [READER], name: 'busy' });
    const quiet = await seedKey(app, { roleIds: [READER], name: 'quiet' });
    for (let i = 0; i < 6; i++) await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: busy.headers });
    await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: quiet.headers });
    const res = await app.inject({ method: 'GET', url: '/api/v1/usage/top?limit=100', headers: admin.headers });
    expect(res.statusCode).toBe(200);
    const keys = res.json().keys as Array<{ keyId: string; name: string; keyPrefix: string; total: number }>;
    const mine = keys.filter((k) => [busy.id, quiet.id].includes(k.keyId));
    expect(mine.map((k) => [k.name, k.total])).toEqual([
      ['busy', 6],
      ['quiet', 1],
    ]);
    expect(mine[0]!.keyPrefix).toBe(busy.secret.slice(0, 16));
    expect(JSON.stringify(res.json())).not.toContain(busy.secret);
    const one = await app.inject({ method: 'GET', url: '/api/v1/usage/top?limit=1', headers: admin.headers });
    expect(one.json().keys).toHaveLength(1);
    expect((await app.inject({ method: 'GET', url: '/api/v1/usage/top?limit=0', headers: admin.headers })).statusCode).toBe(400);
  });

  it('can be switched off', async () => {
    const url = await freshDatabase();
    const app = await buildTestApp({ databaseUrl: url, env: { USAGE_COUNTING: 'false' } });
    const reader = await seedKey(app, { roleIds: [READER] });
    await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: reader.headers });
    await app.services.usage.flush();
    expect(await usageRows(url)).toEqual([]);
  });
});

describe('idle keys on the list', () => {
  it('?unusedSince= lists keys not used since then, never-used ones included', async () => {
    const url = await freshDatabase();
    const app = await buildTestApp({ databaseUrl: url });
    const admin = await seedKey(app, { roleIds: [ADMIN], name: 'idle-admin' });
    const used = await seedKey(app, { roleIds: [READER], name: 'idle-used' });
    const old = await seedKey(app, { roleIds: [READER], name: 'idle-old' });
    const never = await seedKey(app, { roleIds: [READER], name: 'idle-never' });
    await sql(url, "UPDATE api_keys SET last_used_at = now() - interval '40 days' WHERE id = $1", [old.id]);
    await sql(url, "UPDATE api_keys SET last_used_at = now() - interval '1 day' WHERE id = $1", [used.id]);
    await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: admin.headers });
    await app.services.lastUsed.flush();
    const since = new Date(Date.now() - 30 * 86_400_000).toISOString();
    const res = await app.inject({ method: 'GET', url: `/api/v1/apikeys?name=idle-*&unusedSince=${encodeURIComponent(since)}`, headers: admin.headers });
    expect(res.statusCode, res.body).toBe(200);
    const ids = (res.json() as Array<{ id: string }>).map((k) => k.id);
    expect(ids).toContain(old.id);
    expect(ids).toContain(never.id);
    expect(ids).not.toContain(used.id);
    expect(ids).not.toContain(admin.id);
    const bad = await app.inject({ method: 'GET', url: '/api/v1/apikeys?unusedSince=last-week', headers: admin.headers });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0].field).toBe('unusedSince');
  });
});
