// The policies that act on time rather than on a request: expiry warnings, expired notices, the
// idle-key policy, pruning the webhook log, and rolling usage counts up. Every instance runs a tick; only the one holding a
// PostgreSQL advisory lock acts. The lock is a session lock on a connection of its own to the
// direct URL (DATABASE_DIRECT_URL: a pooler in transaction mode would hand the session to someone
// else), and dies with the instance. What it does is safe twice anyway: each notice is a row with
// a unique key written with its event, and an idle key is re-checked under its row lock.
import type { FastifyBaseLogger } from 'fastify';
import pg from 'pg';
import type { PrismaClient } from '../generated/prisma/client.js';
import { spanText } from '../lib/duration.js';
import type { Metrics } from '../lib/metrics.js';
import type { ApiKeyService } from '../services/api-keys.js';
import { SYSTEM_ACTOR } from '../services/escalation-guard.js';
import { toView, type KeyStore } from '../store/api-keys.js';
import { eventActor } from '../webhooks/events.js';
import { recordEvent } from '../webhooks/outbox.js';

export const SCHEDULER_LOCK_KEY = 0x6b657973; // "keys"
/** At most this many keys per policy and tick: a backlog is worked off over the following ticks. */
export const BATCH = 500;
const DAY_MS = 86_400_000;

export interface SchedulerOptions {
  prisma: PrismaClient;
  directUrl: string;
  keys: KeyStore;
  keyService: ApiKeyService;
  log: FastifyBaseLogger;
  metrics: Metrics;
  clock: () => Date;
  /** Lead times, longest first. */
  expiryLeadsMs: number[];
  idleDisableDays: number | null;
  intervalMs: number;
  retentionDays: number;
  connectTimeoutMs: number;
  /** Before the idle pass: this instance's batched lastUsedAt writes. */
  flushLastUsed: () => Promise<void>;
  /** Usage rollups and retention (usage/service.ts). */
  maintainUsage: (at: Date) => Promise<unknown>;
  /** After a tick that recorded events: look for deliveries now. */
  onEvents: () => void;
}

export interface TickResult {
  outcome: 'acted' | 'skipped';
  expiring: number;
  expired: number;
  disabledIdle: number;
}

export function createScheduler(o: SchedulerOptions) {
  const { prisma } = o;
  let timer: NodeJS.Timeout | null = null;
  let current: Promise<unknown> | null = null;
  let stopping = false;
  /** An expired notice is sent for keys that expired at most this long ago (not for ones long dead when this began). */
  const expiredLookbackMs = Math.max(DAY_MS, o.expiryLeadsMs[0] ?? 0);

  /** Records `kinds` for the key's expiry and, when the first is new, its event — in one transaction. */
  async function notice(keyId: string, expiresAt: Date, kinds: string[], type: 'apikey.expiring' | 'apikey.expired', extra: (at: Date) => Record<string, unknown>): Promise<boolean> {
    const key = await o.keys.find(keyId);
    if (!key || !key.expiresAt || key.expiresAt.getTime() !== expiresAt.getTime()) return false; // changed meanwhile: the next tick sees it
    const at = o.clock();
    return prisma.$transaction(async (tx) => {
      const first = await tx.$queryRaw<unknown[]>`
        INSERT INTO key_notices (api_key_id, kind, expires_at) VALUES (${keyId}::uuid, ${kinds[0]}, ${expiresAt}) ON CONFLICT DO NOTHING RETURNING 1`;
      if (!first.length) return false; // another instance sent it
      for (const kind of kinds.slice(1)) {
        await tx.$executeRaw`INSERT INTO key_notices (api_key_id, kind, expires_at) VALUES (${keyId}::uuid, ${kind}, ${expiresAt}) ON CONFLICT DO NOTHING`;
      }
      await recordEvent(tx, type, at, { key: toView(key, at.getTime()), actor: eventActor(SYSTEM_ACTOR), changeReason: null, ...extra(at) });
      return true;
    });
  }

  async function expiring(at: Date): Promise<number> {
    if (!o.expiryLeadsMs.length) return 0;
    const leads = o.expiryLeadsMs.map((ms) => Math.round(ms / 1000));
    // Each key once for the shortest lead it is inside: created 12 hours before its expiry, it
    // gets the 1-day warning only, and the 14-day one is marked sent with it.
    const due = await prisma.$queryRaw<Array<{ id: string; expires_at: Date; lead: number }>>`
      SELECT k.id, k.expires_at, l.lead
        FROM api_keys k
        CROSS JOIN LATERAL (SELECT min(x) AS lead FROM unnest(${leads}::int[]) x WHERE k.expires_at <= ${at}::timestamptz + make_interval(secs => x)) l
       WHERE k.is_enabled AND k.expires_at > ${at}::timestamptz AND l.lead IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM key_notices n WHERE n.api_key_id = k.id AND n.expires_at = k.expires_at AND n.kind = 'expiring:' || l.lead)
       ORDER BY k.expires_at LIMIT ${BATCH}`;
    let sent = 0;
    for (const k of due) {
      if (stopping) break;
      const kinds = leads.filter((l) => l >= k.lead).sort((a, b) => a - b).map((l) => `expiring:${l}`);
      const ok = await notice(k.id, k.expires_at, kinds, 'apikey.expiring', (now) => ({
        expiresAt: k.expires_at.toISOString(),
        leadTime: spanText(k.lead * 1000),
        leadTimeSeconds: k.lead,
        expiresInSeconds: Math.max(0, Math.round((k.expires_at.getTime() - now.getTime()) / 1000)),
      }));
      if (ok) sent++;
    }
    return sent;
  }

  async function expired(at: Date): Promise<number> {
    const due = await prisma.$queryRaw<Array<{ id: string; expires_at: Date }>>`
      SELECT k.id, k.expires_at FROM api_keys k
       WHERE k.is_enabled AND k.expires_at <= ${at}::timestamptz AND k.expires_at > ${at}::timestamptz - make_interval(secs => ${expiredLookbackMs / 1000})
         AND NOT EXISTS (SELECT 1 FROM key_notices n WHERE n.api_key_id = k.id AND n.expires_at = k.expires_at AND n.kind = 'expired')
       ORDER BY k.expires_at LIMIT ${BATCH}`;
    let sent = 0;
    for (const k of due) {
      if (stopping) break;
      if (await notice(k.id, k.expires_at, ['expired'], 'apikey.expired', () => ({ expiredAt: k.expires_at.toISOString() }))) sent++;
    }
    return sent;
  }

  async function idle(at: Date): Promise<number> {
    const days = o.idleDisableDays;
    if (days === null) return 0;
    await o.flushLastUsed().catch(() => {});
    const cutoff = new Date(at.getTime() - days * DAY_MS);
    const due = await prisma.$queryRaw<Array<{ id: string }>>`
      SELECT id FROM api_keys
       WHERE is_enabled AND NOT is_infrastructure_key AND greatest(created_at, last_used_at, enabled_at) <= ${cutoff}
       ORDER BY greatest(created_at, last_used_at, enabled_at) LIMIT ${BATCH}`;
    let disabled = 0;
    for (const k of due) {
      if (stopping) break;
      if (await o.keyService.disableIdle(k.id, { days, cutoff })) disabled++;
    }
    return disabled;
  }

  async function prune(at: Date) {
    await prisma.$executeRaw`DELETE FROM webhook_events WHERE occurred_at < ${at}::timestamptz - make_interval(days => ${o.retentionDays})
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id AND d.status = 'pending')`;
    // A notice is needed only while its expiry can still be warned of or reported.
    await prisma.$executeRaw`DELETE FROM key_notices WHERE expires_at < ${at}::timestamptz - make_interval(secs => ${expiredLookbackMs / 1000 + 86_400})`;
  }

  /** One tick: acts if it gets the lock, else leaves it to the instance that holds it. */
  async function runOnce(): Promise<TickResult> {
    const client = new pg.Client({ connectionString: o.directUrl, connectionTimeoutMillis: o.connectTimeoutMs, query_timeout: o.connectTimeoutMs, keepAlive: true });
    client.on('error', () => {}); // a lost connection ends the tick's lock; the tick's own queries report it
    await client.connect();
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [SCHEDULER_LOCK_KEY]);
      if (!rows[0]?.locked) {
        o.metrics.schedulerRun('skipped');
        return { outcome: 'skipped', expiring: 0, expired: 0, disabledIdle: 0 };
      }
      const at = o.clock();
      const result: TickResult = { outcome: 'acted', expiring: await expiring(at), expired: await expired(at), disabledIdle: await idle(at) };
      await prune(at);
      await o.maintainUsage(at);
      o.metrics.schedulerRun('acted', result);
      if (result.expiring || result.expired || result.disabledIdle) {
        o.log.info({ expiring: result.expiring, expired: result.expired, disabledIdle: result.disabledIdle }, 'policies acted');
        o.onEvents();
      }
      return result;
    } finally {
      // Ending the session releases its lock.
      await client.end().catch(() => {});
    }
  }

  /** runOnce, one at a time on this instance (the timer and a caller never overlap). */
  function tick(): Promise<TickResult> {
    const p = (current ?? Promise.resolve()).then(runOnce, runOnce);
    current = p.catch(() => {});
    return p;
  }

  function next() {
    timer = setTimeout(async () => {
      try {
        await tick();
      } catch (err) {
        o.metrics.schedulerRun('failed');
        o.log.warn({ err: { message: (err as Error).message } }, 'the policy scheduler could not run; it tries again at its next tick');
      }
      if (timer) next();
    }, o.intervalMs);
    timer.unref();
  }

  return {
    runOnce: tick,
    start() {
      if (!timer) next();
    },
    /** No new tick; the one running stops between keys. */
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await current;
    },
  };
}

export type Scheduler = ReturnType<typeof createScheduler>;
