// Sends what the outbox holds. Every instance runs one: it claims due deliveries (never one
// another instance holds), attempts them a few at a time, and settles each — succeeded, retried
// on the schedule (or later, when the receiver's Retry-After asks), or failed when the schedule
// runs out. A 410 disables the subscription at once; so does failing for WEBHOOK_DISABLE_AFTER.
import type { FastifyBaseLogger } from 'fastify';
import type { Metrics } from '../lib/metrics.js';
import type { OutboundPolicy, Resolver } from './address-guard.js';
import { signatureHeader, type SecretBox } from './secret-box.js';
import { sendAttempt, type AttemptResult } from './sender.js';
import type { ClaimedDelivery, WebhookStore } from './store.js';

/** The most a Retry-After may push a retry out. */
export const RETRY_AFTER_CAP_MS = 24 * 3_600_000;

export interface DispatcherOptions {
  store: WebhookStore;
  box: SecretBox;
  policy: OutboundPolicy;
  resolve: Resolver;
  instanceId: string;
  log: FastifyBaseLogger;
  metrics: Metrics;
  timeoutMs: number;
  retryScheduleMs: number[];
  disableAfterMs: number;
  pollMs: number;
  concurrency: number;
}

/** How long a claim holds: longer than any attempt (DNS, connect, answer) plus settling it. */
export const leaseMsFor = (timeoutMs: number) => timeoutMs * 2 + 5_000;

export function createDispatcher(o: DispatcherOptions) {
  const leaseMs = leaseMsFor(o.timeoutMs);
  const inFlight = new Set<Promise<void>>();
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  let polling = false;
  let again = false;

  function secretsOf(d: ClaimedDelivery): string[] {
    const secrets = [o.box.open(d.secretCiphertext, d.webhookId)];
    // During a secret rotation both sign: receivers holding either one verify (the spec allows several signatures).
    if (d.previousSecretCiphertext && d.previousSecretExpiresAt && d.previousSecretExpiresAt.getTime() > Date.now()) {
      secrets.push(o.box.open(d.previousSecretCiphertext, d.webhookId));
    }
    return secrets;
  }

  /** One attempt of a claimed delivery, recorded and settled; returns what happened. */
  async function attempt(d: ClaimedDelivery): Promise<{ result: AttemptResult; status: 'succeeded' | 'failed' | 'pending'; startedAt: Date }> {
    const startedAt = new Date();
    let result: AttemptResult;
    if (d.attempt > o.retryScheduleMs.length + 1) {
      // Claimed more often than the schedule allows: its attempts were cut off (crashes) or could not be recorded.
      result = { statusCode: null, durationMs: 0, error: `not sent: ${d.attempt - 1} attempts already, none of them settled`, retryAfterMs: null, responseBody: null, forbidden: false };
      await o.store.settle(o.instanceId, d, { number: d.attempt, startedAt, durationMs: 0, statusCode: null, error: result.error, responseBody: null }, { status: 'failed' });
      return { result, status: 'failed', startedAt };
    }
    try {
      const signature = signatureHeader(secretsOf(d), d.eventId, Math.floor(startedAt.getTime() / 1000), d.payload);
      result = await sendAttempt({ url: d.url, id: d.eventId, timestampSeconds: Math.floor(startedAt.getTime() / 1000), body: d.payload, signature }, o);
    } catch (err) {
      // The secret would not decrypt (another WEBHOOK_SECRET_KEY): nothing was sent.
      result = { statusCode: null, durationMs: 0, error: `not sent: the signing secret cannot be read (${(err as Error).message})`, retryAfterMs: null, responseBody: null, forbidden: false };
    }
    const ok = result.error === null;
    const nextWait = o.retryScheduleMs[d.attempt - 1];
    const gone = result.statusCode === 410;
    const status = ok ? 'succeeded' : gone || d.eventType === 'ping' || nextWait === undefined ? 'failed' : 'pending';
    const retryInMs = Math.max(nextWait ?? 0, Math.min(result.retryAfterMs ?? 0, RETRY_AFTER_CAP_MS));
    const record = { number: d.attempt, startedAt, durationMs: result.durationMs, statusCode: result.statusCode, error: result.error, responseBody: result.responseBody };
    const held = await o.store.settle(o.instanceId, d, record, status === 'pending' ? { status, retryInMs } : { status });
    o.metrics.webhookAttempt(ok ? 'succeeded' : status === 'pending' ? 'retrying' : 'failed', result.durationMs / 1000);
    const fields = { webhookId: d.webhookId, eventId: d.eventId, eventType: d.eventType, attempt: d.attempt, statusCode: result.statusCode, durationMs: result.durationMs };
    if (!held) o.log.warn(fields, 'webhook delivery was taken over by another instance while this one attempted it (its lease ran out)');
    if (ok) o.log.debug(fields, 'webhook delivered');
    else o.log.info({ ...fields, error: result.error, next: status === 'pending' ? `in ${retryInMs} ms` : 'none' }, 'webhook attempt failed');
    if (d.eventType === 'ping') return { result, status, startedAt }; // a test says nothing of the subscription's health
    if (ok) {
      if (d.failing) await o.store.noteOutcome(d.webhookId, true); // (a streak begun since is ended by the next success)
      return { result, status, startedAt };
    }
    if (gone) {
      if (await o.store.disableFor(d.webhookId, `Disabled by keyward: the endpoint answered 410 Gone on ${startedAt.toISOString()}.`)) {
        o.log.warn(fields, 'webhook subscription disabled: its endpoint answered 410 Gone');
      }
      return { result, status, startedAt };
    }
    const failing = await o.store.noteOutcome(d.webhookId, false);
    if (failing && failing.forMs >= o.disableAfterMs) {
      const since = failing.since.toISOString();
      const reason = `Disabled by keyward: every attempt failed since ${since} (longer than WEBHOOK_DISABLE_AFTER); the last: ${result.error}`;
      if (await o.store.disableFor(d.webhookId, reason)) o.log.warn({ ...fields, failingSince: since }, 'webhook subscription disabled: failing for longer than WEBHOOK_DISABLE_AFTER');
    }
    return { result, status, startedAt };
  }

  function track(d: ClaimedDelivery) {
    const p = attempt(d)
      .then(() => {})
      .catch((err) => o.log.error({ err, webhookId: d.webhookId, eventId: d.eventId }, 'webhook attempt could not be recorded; it is retried when its lease runs out'))
      .finally(() => {
        inFlight.delete(p);
        if (running) poll(); // a slot is free
      });
    inFlight.add(p);
  }

  async function poll(): Promise<void> {
    if (!running) return;
    if (polling) {
      again = true;
      return;
    }
    polling = true;
    try {
      do {
        again = false;
        const free = o.concurrency - inFlight.size;
        if (free <= 0) break;
        const claimed = await o.store.claimDue(o.instanceId, free, leaseMs);
        if (!running) {
          await o.store.release(o.instanceId, claimed.map((d) => d.id)); // stopped meanwhile: another instance (or the next start) sends them
          break;
        }
        for (const d of claimed) track(d);
        if (claimed.length === free) again = true; // there may be more
      } while (again && running);
    } catch (err) {
      o.log.warn({ err }, 'could not look for due webhook deliveries; trying again');
    } finally {
      polling = false;
    }
  }

  function schedule() {
    timer = setTimeout(async () => {
      await poll();
      if (running) schedule();
    }, o.pollMs);
    timer.unref();
  }

  return {
    leaseMs,
    attempt,
    instanceId: o.instanceId,
    /** A delivery inserted already claimed by this instance (the test ping, sent while its caller waits). */
    held: (deliveryId: string) => o.store.held(deliveryId),
    start() {
      if (running) return;
      running = true;
      schedule();
      void poll();
    },
    /** Look now (a change has just committed events). */
    wake() {
      if (running) void poll();
    },
    /** Stops claiming; waits (at most `waitMs`) for attempts in flight — those cut off are retried once their lease runs out. */
    async stop(waitMs: number) {
      running = false;
      if (timer) clearTimeout(timer);
      while (polling) await new Promise((r) => setTimeout(r, 10)); // a claim under way is given back or tracked
      let cap: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => (cap = setTimeout(r, waitMs)))]);
      clearTimeout(cap);
    },
  };
}

export type Dispatcher = ReturnType<typeof createDispatcher>;
