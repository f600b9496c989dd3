// The policies, on a controllable clock (no test waits for real days): expiry warnings once per
// key and lead time — across ticks, instances and restarts — and only the shortest lead a key is
// already inside; expired notices; the idle-key policy (history as system, the event, the key
// refused, the infrastructure key exempt); one instance acting at a time under the advisory lock.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { SCHEDULER_LOCK_KEY } from '../src/policies/scheduler.js';
import { buildTestApp, freshDatabase } from './helpers/app.js';
import { seedKey, sql } from './helpers/keys.js';
import { until } from './helpers/until.js';
import { startReceiver, type Receiver } from './helpers/webhook-receiver.js';

const DAY = 86_400_000;
const INFRA = `jim_ak_${'5ca1ab1e'.repeat(8)}`;
const start = Date.now();
let offset = 0; // how far the policies' clock is ahead of the real one
const clock = () => new Date(Date.now() + offset);

let url: string;
let app: App;
let other: App; // a second instance
let rx: Receiver;
let env: Record<string, string>;
const admin = { 'x-api-key': INFRA };

beforeAll(async () => {
  url = await freshDatabase();
  env = {
    WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
    WEBHOOK_ALLOW_HTTP: 'true',
    WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32',
    WEBHOOK_POLL_MS: '50',
    SCHEDULER_INTERVAL_MS: '86400000', // ticks come from the tests
    IDLE_KEY_DISABLE_DAYS: '30',
    JIM_INFRASTRUCTURE_API_KEY: INFRA,
    METRICS_ENABLED: 'true',
  };
  app = await buildTestApp({ databaseUrl: url, env, clock });
  other = await buildTestApp({ databaseUrl: url, env, clock });
  rx = await startReceiver();
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/webhooks',
    headers: { ...admin, 'content-type': 'application/json' },
    payload: { url: rx.url, eventTypes: ['apikey.expiring', 'apikey.expired', 'apikey.disabled_idle'] },
  });
  expect(res.statusCode).toBe(201);
  rx.secrets = [res.json().secret];
});
afterAll(async () => {
  await rx?.close();
});

const at = (ms: number) => (offset = start + ms - Date.now());
const about = (keyId: string, type: string) => rx.ofType(type).filter((r) => r.verified!.data.key.id === keyId);
/** Ticks, then gives deliveries a moment to arrive. */
async function tick(on: App = app) {
  const result = await on.services.scheduler.runOnce();
  await on.services.dispatcher!.wake();
  await new Promise((r) => setTimeout(r, 300));
  return result;
}

describe('expiry warnings', () => {
  it('warns 14 days and 1 day ahead, each once — whatever ticks, instances or restarts follow — then reports the expiry', async () => {
    const key = await seedKey(app, { name: 'pol-expiring', expiresAt: new Date(start + 20 * DAY).toISOString() });
    at(0);
    await tick();
    expect(about(key.id, 'apikey.expiring')).toHaveLength(0); // 20 days out: inside no lead time

    at(7 * DAY);
    expect((await tick()).expiring).toBeGreaterThanOrEqual(1);
    await until(() => about(key.id, 'apikey.expiring').length === 1, 5_000);
    const [warning] = about(key.id, 'apikey.expiring');
    expect(warning.verifyError).toBeNull();
    expect(warning.verified!.data).toMatchObject({
      key: { id: key.id, name: 'pol-expiring', expiresAt: new Date(start + 20 * DAY).toISOString() },
      actor: { type: 'system' },
      leadTime: '14d',
      leadTimeSeconds: 1_209_600,
    });
    expect(warning.verified!.data.expiresInSeconds).toBeGreaterThan(12.9 * 86_400);

    await tick();
    await tick(other);
    const restarted = await buildTestApp({ databaseUrl: url, env, clock });
    await tick(restarted);
    await restarted.close();
    expect(about(key.id, 'apikey.expiring')).toHaveLength(1);

    at(19.5 * DAY);
    await tick(other);
    await until(() => about(key.id, 'apikey.expiring').length === 2, 5_000);
    expect(about(key.id, 'apikey.expiring')[1].verified!.data.leadTime).toBe('1d');

    at(20 * DAY + 60_000);
    await tick();
    await until(() => about(key.id, 'apikey.expired').length === 1, 5_000);
    expect(about(key.id, 'apikey.expired')[0].verified!.data).toMatchObject({ expiredAt: new Date(start + 20 * DAY).toISOString(), key: { id: key.id } });
    await tick(other);
    expect(about(key.id, 'apikey.expired')).toHaveLength(1);
    expect(about(key.id, 'apikey.expiring')).toHaveLength(2);
    const notices = await sql<{ kind: string }>(url, 'SELECT kind FROM key_notices WHERE api_key_id = $1 ORDER BY kind', [key.id]);
    expect(notices.map((n) => n.kind)).toEqual(['expired', 'expiring:1209600', 'expiring:86400']);
  });

  it('warns a key created inside both lead times once, for the shorter; and again for a new expiry', async () => {
    at(0);
    const key = await seedKey(app, { name: 'pol-soon', expiresAt: new Date(Date.now() + 12 * 3_600_000).toISOString() });
    await tick();
    await tick(other);
    await until(() => about(key.id, 'apikey.expiring').length === 1, 5_000);
    expect(about(key.id, 'apikey.expiring')[0].verified!.data.leadTime).toBe('1d');
    // Extended: a new expiry, so new warnings when its time comes.
    await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${key.id}`, headers: { ...admin, 'content-type': 'application/json' }, payload: { expiresAt: new Date(Date.now() + 10 * DAY).toISOString() } });
    await tick();
    await until(() => about(key.id, 'apikey.expiring').length === 2, 5_000);
    expect(about(key.id, 'apikey.expiring')[1].verified!.data.leadTime).toBe('14d');
  });
});

describe('the idle-key policy', () => {
  it('disables keys unused for IDLE_KEY_DISABLE_DAYS (never used: since creation), with history as system and an event; the infrastructure key is exempt', async () => {
    const idle = await seedKey(app, { name: 'pol-idle' });
    const used = await seedKey(app, { name: 'pol-used' });
    const off = await seedKey(app, { name: 'pol-off', isEnabled: false });
    expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: idle.headers })).statusCode).toBe(200);
    await app.services.lastUsed.flush();
    // "used" was used 25 days from now; "idle" only today.
    await sql(url, "UPDATE api_keys SET last_used_at = now() + interval '25 days' WHERE id = $1", [used.id]);

    at(29 * DAY);
    await tick();
    expect(about(idle.id, 'apikey.disabled_idle')).toHaveLength(0);

    at(31 * DAY);
    const result = await tick();
    expect(result.disabledIdle).toBeGreaterThanOrEqual(1);
    await until(() => about(idle.id, 'apikey.disabled_idle').length === 1, 5_000);
    const event = about(idle.id, 'apikey.disabled_idle')[0].verified!.data;
    expect(event).toMatchObject({ key: { id: idle.id, isEnabled: false }, actor: { type: 'system', id: null, name: 'system' }, idleDays: 30 });
    expect(event.lastUsedAt).not.toBeNull();
    expect(event.changeReason).toMatch(/^Disabled by the idle-key policy \(IDLE_KEY_DISABLE_DAYS=30\): last used /);

    const history = (await app.inject({ method: 'GET', url: `/api/v1/apikeys/${idle.id}/change-history`, headers: admin })).json();
    expect(history[0]).toMatchObject({ operation: 'update', actor: { type: 'system' }, changeReason: event.changeReason, snapshot: { isEnabled: false } });
    const refused = await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: idle.headers });
    expect(refused.statusCode).toBe(401);
    expect(refused.json().code).toBe('API_KEY_DISABLED');

    const state = await sql<{ name: string; is_enabled: boolean }>(url, 'SELECT name, is_enabled FROM api_keys WHERE id = ANY($1::uuid[]) OR is_infrastructure_key ORDER BY name', [[used.id, off.id]]);
    expect(state.find((k) => k.name === 'pol-used')!.is_enabled).toBe(true);
    expect(state.filter((k) => k.name !== 'pol-used' && k.name !== 'pol-off').every((k) => k.is_enabled)).toBe(true); // the infrastructure key
    expect(about(off.id, 'apikey.disabled_idle')).toHaveLength(0); // already disabled: nothing to do

    // An operator enables it again: it is not disabled again until it has been idle anew, counted from then.
    await sql(url, "UPDATE api_keys SET enabled_at = NULL WHERE id = $1", [idle.id]);
    const enabled = await app.inject({ method: 'PATCH', url: `/api/v1/apikeys/${idle.id}`, headers: { ...admin, 'content-type': 'application/json' }, payload: { isEnabled: true } });
    expect(enabled.statusCode).toBe(200);
    // The re-enabling happened (real clock) "now"; move it to the policies' clock, 31 days ahead.
    await sql(url, "UPDATE api_keys SET enabled_at = now() + interval '31 days' WHERE id = $1 AND enabled_at IS NOT NULL", [idle.id]);
    await tick(other);
    expect(about(idle.id, 'apikey.disabled_idle')).toHaveLength(1);
    at(61 * DAY);
    await tick(other);
    expect((await sql<{ is_enabled: boolean }>(url, 'SELECT is_enabled FROM api_keys WHERE id = $1', [idle.id]))[0].is_enabled).toBe(true); // 30 days since: not yet
    at(62.5 * DAY);
    await tick();
    await until(() => about(idle.id, 'apikey.disabled_idle').length === 2, 5_000);
  });
});

describe('the scheduler', () => {
  it('acts on one instance at a time: while another holds the lock, a tick skips; /metrics counts both', async () => {
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1)', [SCHEDULER_LOCK_KEY]);
    try {
      expect((await app.services.scheduler.runOnce()).outcome).toBe('skipped');
    } finally {
      await holder.end();
    }
    expect((await app.services.scheduler.runOnce()).outcome).toBe('acted');
    const metrics = (await app.inject({ method: 'GET', url: '/metrics', headers: admin })).body;
    expect(metrics).toMatch(/keyward_scheduler_runs_total\{outcome="skipped"\} [1-9]/);
    expect(metrics).toMatch(/keyward_scheduler_runs_total\{outcome="acted"\} [1-9]/);
    expect(metrics).toMatch(/keyward_scheduler_actions_total\{action="disabled_idle"\} [1-9]/);
    expect(metrics).toMatch(/keyward_webhook_attempt_duration_seconds_count\{outcome="succeeded"\} [1-9]/);
  });

  it('ticks of two instances at once warn once', async () => {
    at(0);
    const keys = await Promise.all([1, 2, 3].map((n) => seedKey(app, { name: `pol-race-${n}`, expiresAt: new Date(Date.now() + 5 * DAY).toISOString() })));
    const results = await Promise.all([app.services.scheduler.runOnce(), other.services.scheduler.runOnce(), app.services.scheduler.runOnce(), other.services.scheduler.runOnce()]);
    // Whichever instances acted, the three warnings were recorded once (the count may include other keys).
    expect(results.reduce((n, r) => n + r.expiring, 0)).toBeGreaterThanOrEqual(3);
    app.services.dispatcher!.wake();
    await until(() => keys.every((k) => about(k.id, 'apikey.expiring').length === 1), 5_000);
    await new Promise((r) => setTimeout(r, 300));
    for (const k of keys) expect(about(k.id, 'apikey.expiring')).toHaveLength(1);
  });
});
