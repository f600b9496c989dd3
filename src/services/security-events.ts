// Failed authentications, aggregated in memory per (key prefix or "unknown", client IP, reason)
// and 15-minute window, and written in batches: no database write per failure. Attacker-chosen
// values never become row keys: a prefix is recorded only when it matches a stored key.
import type { FastifyBaseLogger } from 'fastify';
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';
import { clientNetwork } from '../lib/client-ip.js';
import { pageOf } from './paging.js';

export const WINDOW_MS = 15 * 60 * 1000;
export const OVERFLOW_IP = 'overflow';

type EventRow = { id: bigint; window_start: Date; key_prefix: string; ip: string; reason: string; count: number; first_seen_at: Date; last_seen_at: Date };

interface Bucket {
  windowStart: number;
  keyPrefix: string;
  ip: string;
  reason: string;
  count: number;
  first: number;
  last: number;
}

export function createSecurityEventRecorder(deps: {
  prisma: PrismaClient;
  log: FastifyBaseLogger;
  flushEveryMs: number;
  retentionDays: number;
  maxBuckets: number;
  /** Server-side bound on one write (below the client's query timeout, so the server gives up first). */
  writeTimeoutMs?: number;
  /** The key that signs paging cursors. */
  cursorKey: () => Promise<Buffer>;
  now?: () => number;
}) {
  const { prisma, log } = deps;
  const now = deps.now ?? Date.now;
  let buckets = new Map<string, Bucket>();
  /** Buckets taken by the write under way: they count against the bound until it ends. */
  let inFlight = 0;
  let timer: NodeJS.Timeout | undefined;
  let pruner: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  let queued: Promise<void> | null = null;

  const idOf = (b: { windowStart: number; keyPrefix: string; ip: string; reason: string }) => `${b.windowStart}|${b.keyPrefix}|${b.ip}|${b.reason}`;
  /** Regular buckets held (pending and in flight); overflow buckets, one per reason and window, come on top. */
  const held = () => buckets.size + inFlight;

  /** Adds to the overflow bucket of this reason and window (never refused: there are few). */
  function overflow(windowStart: number, reason: string, count: number, first: number, last: number) {
    const id = idOf({ windowStart, keyPrefix: 'unknown', ip: OVERFLOW_IP, reason });
    const b = buckets.get(id);
    if (b) {
      b.count += count;
      b.first = Math.min(b.first, first);
      b.last = Math.max(b.last, last);
    } else {
      buckets.set(id, { windowStart, keyPrefix: 'unknown', ip: OVERFLOW_IP, reason, count, first, last });
    }
  }

  /**
   * Counts into an existing bucket, or a new one while the bound allows (pending plus in flight),
   * or else into the overflow bucket: whatever the database does, memory stays bounded.
   */
  function add(b: Bucket) {
    const id = idOf(b);
    const existing = buckets.get(id);
    if (existing) {
      existing.count += b.count;
      existing.first = Math.min(existing.first, b.first);
      existing.last = Math.max(existing.last, b.last);
    } else if (b.ip !== OVERFLOW_IP && held() >= deps.maxBuckets) {
      overflow(b.windowStart, b.reason, b.count, b.first, b.last);
    } else {
      buckets.set(id, b);
    }
  }

  /**
   * Adds the batch to the table, in a transaction bounded on the server: a write the client gave
   * up on (a query timeout during a lock wait) must never land later as well, or the retry would
   * count it twice. statement_timeout cancels it there, and a transaction the client abandoned
   * rolls back.
   */
  async function write(batch: Bucket[]) {
    if (!batch.length) return;
    const col = <K extends keyof Bucket>(k: K) => batch.map((b) => b[k]);
    const iso = (xs: number[]) => xs.map((x) => new Date(x).toISOString());
    await prisma.$transaction([
      prisma.$executeRaw`SELECT set_config('statement_timeout', ${String(deps.writeTimeoutMs ?? 5_000)}, true)`,
      prisma.$executeRaw`
      INSERT INTO security_events (window_start, key_prefix, ip, reason, count, first_seen_at, last_seen_at)
      SELECT * FROM unnest(${iso(col('windowStart'))}::timestamptz[], ${col('keyPrefix')}::text[], ${col('ip')}::text[],
                           ${col('reason')}::text[], ${col('count')}::int[], ${iso(col('first'))}::timestamptz[],
                           ${iso(col('last'))}::timestamptz[])
      ON CONFLICT (window_start, key_prefix, ip, reason) DO UPDATE SET
        count = security_events.count + EXCLUDED.count,
        first_seen_at = least(security_events.first_seen_at, EXCLUDED.first_seen_at),
        last_seen_at = greatest(security_events.last_seen_at, EXCLUDED.last_seen_at)`,
    ]);
  }

  /**
   * One write at a time. A flush asked for while one is under way waits for it and then writes
   * what gathered meanwhile (flushes asked for in between share that one), so a slow database
   * never holds more than one batch besides the pending map.
   */
  function flush(): Promise<void> {
    queued ??= writing.then(async () => {
      queued = null;
      const batch = [...buckets.values()];
      buckets = new Map();
      const regular = batch.filter((b) => b.ip !== OVERFLOW_IP).length;
      inFlight = regular;
      try {
        await write(batch);
      } catch (err) {
        log.warn({ err: { message: (err as Error).message }, buckets: batch.length }, 'could not write security events; keeping them for the next flush');
        inFlight = 0;
        for (const b of batch) add(b); // put back, within the bound: the rest joins the overflow
      } finally {
        inFlight = 0;
      }
    });
    writing = queued;
    return queued;
  }

  /** The aggregates, newest window first, filtered and paged (security_events' own SQL lives here). */
  async function list(q: { from?: string; to?: string; reason?: string; ip?: string; limit?: number; cursor?: string }) {
    const where: Prisma.Sql[] = [];
    if (q.from) where.push(Prisma.sql`last_seen_at >= ${new Date(q.from)}`);
    if (q.to) where.push(Prisma.sql`first_seen_at <= ${new Date(q.to)}`);
    if (q.reason) where.push(Prisma.sql`reason = ${q.reason}`);
    if (q.ip) where.push(Prisma.sql`ip = ${q.ip}`);
    const { items, next } = await pageOf('securityEvents', q, {
      signingKey: deps.cursorKey,
      fetch: (after, take) => {
        const conditions = after ? [...where, Prisma.sql`(window_start, id) < (${new Date(after[0])}, ${BigInt(after[1])})`] : where;
        return prisma.$queryRaw<EventRow[]>`
          SELECT id, window_start, key_prefix, ip, reason, count, first_seen_at, last_seen_at FROM security_events
          ${conditions.length ? Prisma.sql`WHERE ${Prisma.join(conditions, ' AND ')}` : Prisma.empty}
          ORDER BY window_start DESC, id DESC
          LIMIT ${take}`;
      },
      positionOf: (r) => [r.window_start.toISOString(), String(r.id)],
    });
    return {
      items: items.map((r) => ({
        windowStart: r.window_start.toISOString(),
        keyPrefix: r.key_prefix,
        ip: r.ip,
        reason: r.reason,
        count: r.count,
        firstSeenAt: r.first_seen_at.toISOString(),
        lastSeenAt: r.last_seen_at.toISOString(),
      })),
      next,
    };
  }

  async function prune() {
    const removed = await prisma.$executeRaw`
      DELETE FROM security_events WHERE last_seen_at < now() - make_interval(days => ${deps.retentionDays})`;
    if (removed) log.info({ removed }, 'pruned security events past retention');
  }

  return {
    /** One failed authentication. `keyPrefix` only when it matched a stored key. */
    record(keyPrefix: string | undefined, address: string, reason: string) {
      const at = now();
      add({ windowStart: at - (at % WINDOW_MS), keyPrefix: keyPrefix ?? 'unknown', ip: clientNetwork(address), reason, count: 1, first: at, last: at });
    },
    flush,
    prune,
    list,
    /** Buckets held in memory: pending and in flight (overflow buckets included). */
    get pending() {
      return buckets.size + inFlight;
    },
    start() {
      timer ??= setInterval(() => void flush(), deps.flushEveryMs);
      timer.unref();
      pruner ??= setInterval(() => void prune().catch((err) => log.warn({ err }, 'security event pruning failed')), 3_600_000);
      pruner.unref();
      void prune().catch((err) => log.warn({ err }, 'security event pruning failed'));
    },
    async stop() {
      if (timer) clearInterval(timer);
      if (pruner) clearInterval(pruner);
      timer = pruner = undefined;
      await flush();
    },
  };
}

export type SecurityEventRecorder = ReturnType<typeof createSecurityEventRecorder>;
