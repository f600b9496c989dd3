// Failed authentications, aggregated in memory per (key prefix or "unknown", client IP, reason)
// and 15-minute window, and written in batches: no database write per failure. Attacker-chosen
// values never become row keys: a prefix is recorded only when it matches a stored key.
import type { FastifyBaseLogger } from 'fastify';
import type { PrismaClient } from '../generated/prisma/client.js';
import { clientNetwork } from '../lib/client-ip.js';

export const WINDOW_MS = 15 * 60 * 1000;
export const OVERFLOW_IP = 'overflow';

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
  now?: () => number;
}) {
  const { prisma, log } = deps;
  const now = deps.now ?? Date.now;
  let buckets = new Map<string, Bucket>();
  let timer: NodeJS.Timeout | undefined;
  let pruner: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();

  function add(keyPrefix: string, ip: string, reason: string, at: number) {
    const windowStart = at - (at % WINDOW_MS);
    const id = `${windowStart}|${keyPrefix}|${ip}|${reason}`;
    const b = buckets.get(id);
    if (b) {
      b.count++;
      b.last = at;
      return true;
    }
    if (buckets.size >= deps.maxBuckets) return false;
    buckets.set(id, { windowStart, keyPrefix, ip, reason, count: 1, first: at, last: at });
    return true;
  }

  /** Puts a bucket back (after a failed write), adding to one that has formed since. */
  function merge(b: Bucket) {
    const id = `${b.windowStart}|${b.keyPrefix}|${b.ip}|${b.reason}`;
    const existing = buckets.get(id);
    if (existing) {
      existing.count += b.count;
      existing.first = Math.min(existing.first, b.first);
      existing.last = Math.max(existing.last, b.last);
    } else {
      buckets.set(id, b); // may pass the bound briefly: these were already counted once
    }
  }

  async function write(batch: Bucket[]) {
    if (!batch.length) return;
    const col = <K extends keyof Bucket>(k: K) => batch.map((b) => b[k]);
    const iso = (xs: number[]) => xs.map((x) => new Date(x).toISOString());
    await prisma.$executeRaw`
      INSERT INTO security_events (window_start, key_prefix, ip, reason, count, first_seen_at, last_seen_at)
      SELECT * FROM unnest(${iso(col('windowStart'))}::timestamptz[], ${col('keyPrefix')}::text[], ${col('ip')}::text[],
                           ${col('reason')}::text[], ${col('count')}::int[], ${iso(col('first'))}::timestamptz[],
                           ${iso(col('last'))}::timestamptz[])
      ON CONFLICT (window_start, key_prefix, ip, reason) DO UPDATE SET
        count = security_events.count + EXCLUDED.count,
        first_seen_at = least(security_events.first_seen_at, EXCLUDED.first_seen_at),
        last_seen_at = greatest(security_events.last_seen_at, EXCLUDED.last_seen_at)`;
  }

  function flush(): Promise<void> {
    const batch = [...buckets.values()];
    buckets = new Map();
    chain = chain.then(() =>
      write(batch).catch((err) => {
        log.warn({ err, buckets: batch.length }, 'could not write security events; keeping them for the next flush');
        for (const b of batch) merge(b);
      }),
    );
    return chain;
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
      const ip = clientNetwork(address);
      // Full: count it anyway, under one overflow bucket per reason and window.
      if (!add(keyPrefix ?? 'unknown', ip, reason, at)) {
        const windowStart = at - (at % WINDOW_MS);
        const id = `${windowStart}|unknown|${OVERFLOW_IP}|${reason}`;
        const b = buckets.get(id);
        if (b) {
          b.count++;
          b.last = at;
        } else {
          buckets.set(id, { windowStart, keyPrefix: 'unknown', ip: OVERFLOW_IP, reason, count: 1, first: at, last: at });
        }
      }
    },
    flush,
    prune,
    get pending() {
      return buckets.size;
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
