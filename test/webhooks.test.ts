// Webhook subscriptions and delivery against a real receiver that verifies every signature with
// the standardwebhooks package: CRUD and its rules, each key event (payload as the API shows the
// key, never a secret), the outbox's transaction, retries on the (compressed) schedule with the
// same webhook-id, Retry-After, 410, timeouts, redirects, disabling a subscription failing too
// long, secret rotation with two signatures, the test ping and the delivery log.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { recordEvent } from '../src/webhooks/outbox.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, json, READER, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { until } from './helpers/until.js';
import { startReceiver, type Receiver } from './helpers/webhook-receiver.js';

export const WEBHOOK_ENV = {
  WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32',
  WEBHOOK_RETRY_SCHEDULE: '100ms,200ms,300ms',
  WEBHOOK_POLL_MS: '50',
  WEBHOOK_TIMEOUT_MS: '1000',
  SCHEDULER_INTERVAL_MS: '86400000',
};

let app: App;
let url: string;
let admin: SeededKey;
let rx: Receiver;
const logs: string[] = [];
const issued: string[] = []; // every secret a response handed out

beforeAll(async () => {
  url = (await testDatabase()).url;
  const logStream = new Writable({ write: (c, _e, cb) => (logs.push(String(c)), cb()) });
  app = await buildTestApp({ env: { ...WEBHOOK_ENV, LOG_LEVEL: 'debug' }, logStream });
  admin = await seedKey(app, { name: 'wh-admin', roleIds: [ADMIN] });
  issued.push(admin.secret);
  rx = await startReceiver();
});
afterAll(async () => {
  await rx?.close();
});
beforeEach(() => {
  rx.answer = () => ({ status: 204 });
});

const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, payload?: object, headers: Record<string, string> = admin.headers) =>
  app.inject({ method, url: `/api/v1${path}`, headers: { ...headers, ...(payload ? json : {}) }, payload: payload as never });

async function subscribe(eventTypes: string[], extra: object = {}, to = rx) {
  const res = await call('POST', '/webhooks', { url: to.url, eventTypes, ...extra });
  expect(res.statusCode, res.body).toBe(201);
  const body = res.json();
  issued.push(body.secret);
  to.secrets = [body.secret];
  return body as { id: string; secret: string } & Record<string, unknown>;
}
const deliveries = async (id: string, query = '') => (await call('GET', `/webhooks/${id}/deliveries${query}`)).json() as Array<Record<string, any>>;
const remove = (id: string) => call('DELETE', `/webhooks/${id}`);

describe('subscriptions', () => {
  it('creates with the secret once, then lists, reads, changes, disables, enables and deletes without it', async () => {
    const res = await call('POST', '/webhooks', { url: rx.url, eventTypes: ['apikey.created'], description: 'ops' });
    expect(res.statusCode).toBe(201);
    const created = res.json();
    issued.push(created.secret);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(res.headers.location).toBe(`/api/v1/webhooks/${created.id}`);
    expect(created).toMatchObject({ url: rx.url, eventTypes: ['apikey.created'], description: 'ops', isEnabled: true, disabledReason: null, failingSince: null });

    const got = await call('GET', `/webhooks/${created.id}`);
    expect(got.statusCode).toBe(200);
    expect(got.json()).not.toHaveProperty('secret');
    expect(got.body).not.toContain(created.secret.slice(6));
    const list = (await call('GET', '/webhooks')).json();
    expect(list.map((w: { id: string }) => w.id)).toContain(created.id);
    expect(JSON.stringify(list)).not.toContain('whsec_');

    const patched = await call('PATCH', `/webhooks/${created.id}`, { eventTypes: ['apikey.created', 'apikey.deleted'] });
    expect(patched.json()).toMatchObject({ eventTypes: ['apikey.created', 'apikey.deleted'], description: 'ops' });
    const replaced = await call('PUT', `/webhooks/${created.id}`, { url: `${rx.url}/v2`, eventTypes: ['apikey.updated'] });
    expect(replaced.json()).toMatchObject({ url: `${rx.url}/v2`, eventTypes: ['apikey.updated'], description: null, isEnabled: true });
    expect((await call('POST', `/webhooks/${created.id}/disable`)).json().isEnabled).toBe(false);
    expect((await call('POST', `/webhooks/${created.id}/enable`)).json().isEnabled).toBe(true);

    // At rest: AES-GCM ciphertext, never the secret or its key bytes.
    const [row] = await sql<{ secret_ciphertext: string }>(url, 'SELECT secret_ciphertext FROM webhooks WHERE id = $1', [created.id]);
    expect(row.secret_ciphertext).toMatch(/^v1:[\w-]{8}:/);
    expect(row.secret_ciphertext).not.toContain(created.secret.slice(6));
    expect(row.secret_ciphertext).not.toContain(Buffer.from(created.secret.slice(6), 'base64').toString('base64url'));

    expect((await remove(created.id)).statusCode).toBe(204);
    const gone = await call('GET', `/webhooks/${created.id}`);
    expect(gone.statusCode).toBe(404);
    expect(gone.json().code).toBe('WEBHOOK_NOT_FOUND');
    expect((await remove(created.id)).json().code).toBe('WEBHOOK_NOT_FOUND');
  });

  it('needs webhooks.read and webhooks.write (a Reader key has neither)', async () => {
    const reader = await seedKey(app, { name: 'wh-reader', roleIds: [READER] });
    for (const [method, path, body] of [
      ['GET', '/webhooks'],
      ['POST', '/webhooks', { url: rx.url, eventTypes: ['apikey.created'] }],
    ] as const) {
      const res = await call(method, path, body, reader.headers);
      expect(res.statusCode).toBe(403);
      expect(res.json().code).toBe('FORBIDDEN');
      expect(res.json().detail).toMatch(/webhooks\.(read|write)/);
    }
    expect(await sql(url, 'SELECT 1 FROM webhooks WHERE url = $1', [rx.url])).toHaveLength(0);
  });

  it('refuses bad bodies with the field and the rule, and writes nothing', async () => {
    const before = await sql(url, 'SELECT count(*)::int AS n FROM webhooks');
    const cases: Array<[object, string, RegExp]> = [
      [{ url: rx.url, eventTypes: [] }, 'eventTypes', /at least one event type/],
      [{ url: rx.url, eventTypes: ['apikey.exploded'] }, 'eventTypes[0]', /must be one of apikey\.created/],
      [{ url: rx.url, eventTypes: ['apikey.created', 'apikey.created'] }, 'eventTypes', /repeat/],
      [{ url: 'ftp://hooks.example.com/x', eventTypes: ['apikey.created'] }, 'url', /http:\/\/ or https:\/\//],
      [{ url: 'not a url', eventTypes: ['apikey.created'] }, 'url', /absolute URL/],
      [{ url: 'https://u:p@hooks.example.com/', eventTypes: ['apikey.created'] }, 'url', /user name or password/],
      [{ eventTypes: ['apikey.created'] }, 'url', /required/],
      [{ url: rx.url, eventTypes: ['apikey.created'], secret: 'whsec_x' }, 'secret', /not a field|unknown|not allowed|Unrecognized/i],
    ];
    for (const [body, field, rule] of cases) {
      const res = await call('POST', '/webhooks', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      const problem = res.json();
      expect(problem.code).toBe('VALIDATION_FAILED');
      const error = problem.errors.find((e: { field: string }) => e.field === field);
      expect(error, JSON.stringify(problem)).toBeDefined();
      expect(`${error.message} ${problem.detail}`).toMatch(rule);
    }
    expect(await sql(url, 'SELECT count(*)::int AS n FROM webhooks')).toEqual(before);
  });

  it('answers 503 WEBHOOKS_NOT_CONFIGURED on a server without WEBHOOK_SECRET_KEY', async () => {
    const off = await buildTestApp();
    const res = await off.inject({ method: 'GET', url: '/api/v1/webhooks', headers: admin.headers });
    expect(res.statusCode).toBe(503);
    expect(res.json().code).toBe('WEBHOOKS_NOT_CONFIGURED');
    expect(res.json().detail).toMatch(/WEBHOOK_SECRET_KEY/);
    await off.close();
  });
});

describe('key events', () => {
  it('sends created, updated, rotated, revoked and deleted, each signed, with the key as the API shows it and never a secret', async () => {
    const hook = await subscribe(['apikey.created', 'apikey.updated', 'apikey.rotated', 'apikey.revoked', 'apikey.deleted']);
    const created = await call('POST', '/apikeys', { name: 'wh-evented', roleIds: [READER], changeReason: 'CHG-7' });
    const key = created.json();
    issued.push(key.key);
    // JIM's PUT, as Set-JIMApiKey sends it.
    await call('PUT', `/apikeys/${key.id}`, { name: 'wh-evented-2', description: null, roleIds: [READER], isEnabled: true, expiresAt: null });
    const rotated = (await call('POST', `/apikeys/${key.id}/rotate`, {})).json();
    issued.push(rotated.key);
    expect((await app.inject({ method: 'POST', url: '/api/v1/apikeys/revoke', headers: json, payload: { keys: [rotated.key], source: 'a pastebin' } })).statusCode).toBe(202);
    await call('DELETE', `/apikeys/${key.id}`);

    const types = ['apikey.created', 'apikey.updated', 'apikey.rotated', 'apikey.revoked', 'apikey.deleted'];
    await until(() => types.every((t) => rx.ofType(t).some((r) => r.verified!.data.key.id === key.id)), 10_000);
    const mine = rx.received.filter((r) => r.verified?.data?.key?.id === key.id);
    expect(mine.map((r) => r.verified!.type)).toEqual(types);
    for (const r of mine) {
      expect(r.verifyError).toBeNull();
      expect(r.id).toMatch(/^msg_[\w-]{26}$/);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.verified!.timestamp).toMatch(/Z$/);
      for (const secret of issued) expect(r.body).not.toContain(secret);
      expect(r.body).not.toMatch(/\$argon2id\$|"hash"/);
      // The attempt's own time, well inside the verifier's 5-minute tolerance.
      expect(Math.abs(Number(r.timestamp) - r.at / 1000)).toBeLessThan(5);
    }
    // What the verifier refuses: an altered body, a replay outside the tolerance, another secret.
    const { Webhook } = await import('standardwebhooks');
    const [first] = mine;
    const headers = first.headers as Record<string, string>;
    expect(() => new Webhook(hook.secret).verify(first.body.replace('wh-evented', 'wh-evilted'), headers)).toThrow(/No matching signature/);
    expect(() => new Webhook(hook.secret).verify(first.body, { ...headers, 'webhook-timestamp': String(Number(first.timestamp) - 600) })).toThrow(/too old/);
    expect(() => new Webhook(`whsec_${Buffer.alloc(24, 1).toString('base64')}`).verify(first.body, headers)).toThrow(/No matching signature/);
    const [c, u, ro, rv, d] = mine.map((r) => r.verified!.data);
    expect(c.actor).toEqual({ type: 'apiKey', id: admin.id, name: 'wh-admin' });
    expect(c.changeReason).toBe('CHG-7');
    expect(c.key).toMatchObject({ id: key.id, name: 'wh-evented', keyPrefix: key.keyPrefix, isEnabled: true, roles: [{ id: READER, name: 'Reader' }] });
    expect(u.key.name).toBe('wh-evented-2');
    expect(ro.key.keyPrefix).toBe(rotated.keyPrefix);
    expect(rv.actor.type).toBe('revocationReport');
    expect(rv.changeReason).toMatch(/a pastebin/);
    expect(rv.key.isEnabled).toBe(false);
    expect(d.key.id).toBe(key.id);
    expect([c, u, ro, rv, d].map((x) => x.historyVersion)).toEqual([1, 2, 3, 4, 5]);
    await remove(hook.id);
  });

  it('records an event only with a subscription that wants it, and never for a rolled-back change', async () => {
    const count = async () => (await sql<{ n: number }>(url, 'SELECT count(*)::int AS n FROM webhook_events'))[0].n;
    const before = await count();
    await seedKey(app, { name: 'wh-unheard' }); // nobody subscribed to apikey.created now
    expect(await count()).toBe(before);
    const hook = await subscribe(['apikey.created']);
    await expect(
      app.prisma.$transaction(async (tx) => {
        expect(await recordEvent(tx, 'apikey.created', new Date(), { probe: true })).toBe(1);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    // A change that fails inside its transaction (a role that does not exist) sends nothing either.
    expect((await call('POST', '/apikeys', { name: 'wh-bad', roleIds: [99999] })).statusCode).toBe(400);
    expect(await count()).toBe(before);
    await seedKey(app, { name: 'wh-heard' });
    expect(await count()).toBe(before + 1);
    await until(() => rx.ofType('apikey.created').some((r) => r.verified!.data.key.name === 'wh-heard'), 10_000);
    await remove(hook.id);
  });
});

describe('delivery', () => {
  it('retries failures on the schedule with the same webhook-id, and logs every attempt', async () => {
    const hook = await subscribe(['apikey.created']);
    rx.answer = (_r, i) => (rx.received.slice(0, i).filter((x) => x.verified?.data?.key?.name === 'wh-retried').length < 2 ? { status: 500, body: 'not now' } : { status: 200 });
    await seedKey(app, { name: 'wh-retried' });
    await until(() => rx.received.filter((r) => r.verified?.data?.key?.name === 'wh-retried').length === 3, 10_000);
    const attempts = rx.received.filter((r) => r.verified?.data?.key?.name === 'wh-retried');
    expect(new Set(attempts.map((a) => a.id)).size).toBe(1); // receivers deduplicate on it
    expect(new Set(attempts.map((a) => a.body)).size).toBe(1);
    await until(async () => (await deliveries(hook.id))[0]?.status === 'succeeded', 5_000);
    const [d] = await deliveries(hook.id);
    expect(d).toMatchObject({ eventId: attempts[0].id, eventType: 'apikey.created', status: 'succeeded', attemptCount: 3, nextAttemptAt: null });
    expect(d.attempts.map((a: { statusCode: number }) => a.statusCode)).toEqual([500, 500, 200]);
    expect(d.attempts[0]).toMatchObject({ number: 1, error: 'answered 500', responseBody: 'not now' });
    expect(d.attempts[2].error).toBeNull();
    expect(d.attempts.every((a: { durationMs: number }) => Number.isInteger(a.durationMs) && a.durationMs >= 0)).toBe(true);
    // The schedule's waits lie between the attempts (100 ms, then 200 ms).
    const started = d.attempts.map((a: { startedAt: string }) => Date.parse(a.startedAt));
    expect(started[1] - started[0]).toBeGreaterThanOrEqual(95);
    expect(started[2] - started[1]).toBeGreaterThanOrEqual(195);
    await remove(hook.id);
  });

  it('gives up when the schedule runs out: failed, and the failing streak recorded', async () => {
    const hook = await subscribe(['apikey.created']);
    rx.answer = () => ({ status: 502 });
    await seedKey(app, { name: 'wh-hopeless' });
    await until(async () => (await deliveries(hook.id))[0]?.status === 'failed', 10_000);
    const [d] = await deliveries(hook.id);
    expect(d.attemptCount).toBe(4); // the first and the schedule's three
    expect((await call('GET', `/webhooks/${hook.id}`)).json().failingSince).not.toBeNull();
    await remove(hook.id);
  });

  it('honours Retry-After beyond the schedule', async () => {
    const hook = await subscribe(['apikey.created']);
    rx.answer = () => ({ status: 503, headers: { 'retry-after': '3' } });
    await seedKey(app, { name: 'wh-later' });
    await until(async () => (await deliveries(hook.id))[0]?.attempts.length === 1, 10_000);
    const [d] = await deliveries(hook.id);
    expect(d.status).toBe('pending');
    expect(Date.parse(d.nextAttemptAt) - Date.parse(d.attempts[0].startedAt)).toBeGreaterThanOrEqual(3_000);
    await remove(hook.id);
  });

  it('disables the subscription on 410 Gone, and queues nothing more for it', async () => {
    const hook = await subscribe(['apikey.created']);
    rx.answer = () => ({ status: 410 });
    await seedKey(app, { name: 'wh-gone' });
    await until(async () => (await call('GET', `/webhooks/${hook.id}`)).json().isEnabled === false, 10_000);
    const after = (await call('GET', `/webhooks/${hook.id}`)).json();
    expect(after.disabledReason).toMatch(/410 Gone/);
    expect((await deliveries(hook.id))[0]).toMatchObject({ status: 'failed', attemptCount: 1 });
    await seedKey(app, { name: 'wh-after-gone' });
    expect(await deliveries(hook.id)).toHaveLength(1);
    // Enabled again by a person: the reason and the streak start over.
    const enabled = (await call('POST', `/webhooks/${hook.id}/enable`)).json();
    expect(enabled).toMatchObject({ isEnabled: true, disabledReason: null, failingSince: null });
    await remove(hook.id);
  });

  it('disables a subscription that has failed for longer than WEBHOOK_DISABLE_AFTER, and says so in the log', async () => {
    const hook = await subscribe(['apikey.created']);
    rx.answer = () => ({ status: 500 });
    await sql(url, "UPDATE webhooks SET failing_since = now() - interval '6 days' WHERE id = $1", [hook.id]);
    await seedKey(app, { name: 'wh-failing' });
    await until(async () => (await call('GET', `/webhooks/${hook.id}`)).json().isEnabled === false, 10_000);
    expect((await call('GET', `/webhooks/${hook.id}`)).json().disabledReason).toMatch(/WEBHOOK_DISABLE_AFTER.*answered 500/);
    expect(logs.some((l) => l.includes('failing for longer than WEBHOOK_DISABLE_AFTER') && l.includes(hook.id))).toBe(true);
    await remove(hook.id);
  });

  it('counts a timeout and a redirect as failures (a redirect is never followed)', async () => {
    const hook = await subscribe(['apikey.created']);
    rx.answer = (r) => (r.verified?.data?.key?.name === 'wh-slow' ? 'hang' : { status: 302, headers: { location: 'http://127.0.0.1:9/' } });
    await seedKey(app, { name: 'wh-slow' });
    await until(async () => (await deliveries(hook.id))[0]?.attempts.length >= 1, 10_000);
    expect((await deliveries(hook.id))[0].attempts[0]).toMatchObject({ statusCode: null, error: 'no answer within 1000 ms' });
    await seedKey(app, { name: 'wh-moved' });
    await until(async () => (await deliveries(hook.id)).find((d) => JSON.parse(d.payload).data.key.name === 'wh-moved')?.attempts.length >= 1, 10_000);
    const moved = (await deliveries(hook.id)).find((d) => JSON.parse(d.payload).data.key.name === 'wh-moved')!;
    expect(moved.attempts[0]).toMatchObject({ statusCode: 302, error: 'answered 302 (redirects are not followed)' });
    await remove(hook.id);
  });

  it('records an answer holding NUL bytes (binary), and an attempt whose subscription was deleted meanwhile, without an error', async () => {
    const hook = await subscribe(['apikey.created']);
    rx.answer = () => ({ status: 200, body: 'ok\u0000\u0000binary' });
    await seedKey(app, { name: 'wh-binary' });
    await until(async () => (await deliveries(hook.id))[0]?.status === 'succeeded', 10_000);
    expect((await deliveries(hook.id))[0].attempts[0].responseBody).toBe('ok\uFFFD\uFFFDbinary');

    rx.answer = () => 'hang';
    const before = logs.length;
    await seedKey(app, { name: 'wh-deleted-meanwhile' });
    await until(() => rx.received.some((r) => r.verified?.data?.key?.name === 'wh-deleted-meanwhile'), 10_000);
    await remove(hook.id);
    await new Promise((r) => setTimeout(r, 1_300)); // the attempt times out (1 s) and is settled
    expect(logs.slice(before).join('')).not.toMatch(/could not be recorded|"level":50/);
  });

  it('signs with both secrets during a secret rotation, with the new one alone after', async () => {
    const hook = await subscribe(['apikey.created']);
    const old = hook.secret;
    const res = await call('POST', `/webhooks/${hook.id}/rotate-secret`, { gracePeriodSeconds: 3600 });
    expect(res.statusCode).toBe(200);
    const { secret: fresh, previousSecretExpiresAt } = res.json();
    issued.push(fresh);
    expect(fresh).not.toBe(old);
    expect(Date.parse(previousSecretExpiresAt) - Date.now()).toBeGreaterThan(3_500_000);
    rx.secrets = [old]; // a receiver not yet redeployed
    await seedKey(app, { name: 'wh-two-sigs' });
    await until(() => rx.ofType('apikey.created').some((r) => r.verified!.data.key.name === 'wh-two-sigs'), 10_000);
    const r = rx.ofType('apikey.created').find((x) => x.verified!.data.key.name === 'wh-two-sigs')!;
    expect(r.signature.split(' ')).toHaveLength(2);
    // Both verify.
    rx.secrets = [fresh];
    const { Webhook } = await import('standardwebhooks');
    expect(new Webhook(fresh).verify(r.body, r.headers as Record<string, string>)).toMatchObject({ type: 'apikey.created' });
    expect(new Webhook(old).verify(r.body, r.headers as Record<string, string>)).toMatchObject({ type: 'apikey.created' });

    const ended = (await call('POST', `/webhooks/${hook.id}/rotate-secret`, { gracePeriodSeconds: 0 })).json();
    issued.push(ended.secret);
    expect(ended.previousSecretExpiresAt).toBeNull();
    rx.secrets = [ended.secret];
    await seedKey(app, { name: 'wh-one-sig' });
    await until(() => rx.ofType('apikey.created').some((x) => x.verified!.data.key.name === 'wh-one-sig'), 10_000);
    const one = rx.ofType('apikey.created').find((x) => x.verified!.data.key.name === 'wh-one-sig')!;
    expect(one.signature.split(' ')).toHaveLength(1);
    expect(() => new Webhook(fresh).verify(one.body, one.headers as Record<string, string>)).toThrow(/No matching signature/);
    await remove(hook.id);
  });

  it('POST /test sends a signed ping now and answers with its recorded attempt; a failing ping is not retried', async () => {
    const hook = await subscribe(['apikey.deleted']);
    const res = await call('POST', `/webhooks/${hook.id}/test`);
    expect(res.statusCode).toBe(200);
    const d = res.json();
    expect(d).toMatchObject({ eventType: 'ping', status: 'succeeded', attemptCount: 1 });
    expect(d.attempts[0].statusCode).toBe(204);
    const ping = rx.ofType('ping').find((r) => r.id === d.eventId)!;
    expect(ping.verified!.data).toMatchObject({ webhookId: hook.id, url: rx.url });
    rx.answer = () => ({ status: 500 });
    const failed = (await call('POST', `/webhooks/${hook.id}/test`)).json();
    expect(failed).toMatchObject({ status: 'failed', attemptCount: 1 });
    expect((await call('GET', `/webhooks/${hook.id}`)).json().failingSince).toBeNull(); // a test says nothing of its health
    await remove(hook.id);
  });

  it('pages the delivery log newest first, filters by status, and rejects a bad cursor', async () => {
    const hook = await subscribe(['apikey.created']);
    for (const n of [1, 2, 3]) await seedKey(app, { name: `wh-page-${n}` });
    await until(async () => (await deliveries(hook.id, '?status=succeeded')).length === 3, 10_000);
    const first = await call('GET', `/webhooks/${hook.id}/deliveries?limit=2`);
    expect(first.json()).toHaveLength(2);
    const next = /<([^>]+)>; rel="next"/.exec(String(first.headers.link))![1];
    const second = await app.inject({ method: 'GET', url: next, headers: admin.headers });
    expect(second.json()).toHaveLength(1);
    const names = [...first.json(), ...second.json()].map((d: { payload: string }) => JSON.parse(d.payload).data.key.name);
    expect(names).toEqual(['wh-page-3', 'wh-page-2', 'wh-page-1']);
    expect(await deliveries(hook.id, '?status=pending')).toEqual([]);
    const bad = await call('GET', `/webhooks/${hook.id}/deliveries?cursor=abc`);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors[0].field).toBe('cursor');
    await remove(hook.id);
  });

  it('never logs or stores a signing secret or a key secret (every table, every row)', async () => {
    const text = logs.join('');
    expect(text).toContain('webhook'); // the log did see the deliveries
    for (const secret of issued) expect(text).not.toContain(secret);
    expect(text).not.toContain('whsec_');
    const tables = await sql<{ tablename: string }>(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
    const dump = (await Promise.all(tables.map((t) => sql(url, `SELECT * FROM "${t.tablename}"`)))).map((rows) => JSON.stringify(rows)).join('\n');
    expect(dump).toContain('apikey.created'); // the outbox is in there
    for (const secret of issued) {
      expect(dump).not.toContain(secret);
      expect(dump).not.toContain(secret.replace(/^whsec_|^jim_ak_/, ''));
    }
  });
});
