// Two instances, one delivery each: an instance killed (SIGKILL) in the middle of an attempt
// leaves its claim to run out, and the other delivers — nothing lost, and only the attempt that
// was in flight arrives twice (the receiver deduplicates on webhook-id).
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { generateKey } from '../src/auth/key-format.js';
import { buildTestApp, freshDatabase } from './helpers/app.js';
import { sql } from './helpers/keys.js';
import { freePort, killHard, startServer, waitForHealthy, type RunningServer } from './helpers/server-process.js';
import { until } from './helpers/until.js';
import { startReceiver } from './helpers/webhook-receiver.js';

const running: RunningServer[] = [];
afterAll(() => running.forEach(killHard));

describe('an instance killed mid-delivery', () => {
  it('leaves the attempt to another instance: every event arrives, only the in-flight one twice', async () => {
    const url = await freshDatabase();
    const infra = generateKey();
    const webhookEnv = {
      WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32',
      WEBHOOK_POLL_MS: '50',
      WEBHOOK_TIMEOUT_MS: '2000',
      WEBHOOK_RETRY_SCHEDULE: '100ms,100ms,100ms,100ms,100ms',
    };
    const rx = await startReceiver();
    let holding = true; // until the first instance is dead, nothing is answered
    rx.answer = () => (holding ? 'hang' : { status: 200 });

    const port = await freePort();
    const first = startServer({
      NODE_ENV: 'test',
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_TIME_COST: '1',
      RATE_LIMIT_ENABLED: 'false',
      LOG_LEVEL: 'info',
      PORT: String(port),
      DATABASE_URL: url,
      JIM_INFRASTRUCTURE_API_KEY: infra,
      WEBHOOK_CONCURRENCY: '1',
      ...webhookEnv,
    });
    running.push(first);
    await waitForHealthy(port, first);
    const headers = { 'x-api-key': infra, 'content-type': 'application/json' };
    const base = `http://127.0.0.1:${port}/api/v1`;
    const hook = (await (await fetch(`${base}/webhooks`, { method: 'POST', headers, body: JSON.stringify({ url: rx.url, eventTypes: ['apikey.created'] }) })).json()) as { secret: string };
    rx.secrets = [hook.secret];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/apikeys`, { method: 'POST', headers, body: JSON.stringify({ name: `cluster-${i}` }) });
      expect(res.status).toBe(201);
    }
    await until(() => rx.received.length >= 1, 10_000);
    killHard(first);
    await first.exited;
    const inFlight = new Set(rx.received.map((r) => r.id));
    expect(inFlight.size).toBe(1); // WEBHOOK_CONCURRENCY=1: one attempt at a time
    holding = false;

    const events = (await sql<{ id: string }>(url, 'SELECT id FROM webhook_events')).map((e) => e.id);
    expect(events).toHaveLength(5);
    const second = await buildTestApp({ databaseUrl: url, env: webhookEnv });
    // The four waiting at once; the claimed one when its lease (2 × timeout + 5 s) runs out.
    await until(() => events.every((id) => rx.received.some((r) => r.id === id && r.answered === 200)), 30_000);
    await new Promise((r) => setTimeout(r, 500));
    for (const r of rx.received) expect(r.verifyError).toBeNull();
    const counts = rx.counts();
    const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    expect(twice).toEqual([...inFlight]);
    expect(counts.get([...inFlight][0])).toBe(2);
    const settled = await sql<{ status: string; attempt_count: number }>(url, 'SELECT status, attempt_count FROM webhook_deliveries ORDER BY attempt_count');
    expect(settled.map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded']);
    expect(settled.map((d) => d.attempt_count)).toEqual([1, 1, 1, 1, 2]);
    // The dead instance left no attempt row (it died before settling); the second instance recorded its own.
    const attempts = await sql<{ n: number }>(url, "SELECT count(*)::int AS n FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.event_id = $1", [[...inFlight][0]]);
    expect(attempts[0].n).toBe(1);
    await second.close();
    await rx.close();
  }, 90_000);
});
