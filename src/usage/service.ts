// Usage as the API shows it: one key's buckets over a range (zero-filled, aligned to the interval
// in UTC), the busiest keys, and the maintenance the scheduler runs (rollups, pruning).
import type { FieldError } from '../lib/errors.js';
import { AppError, ValidationError } from '../lib/errors.js';
import { INTERVALS, USAGE_OUTCOMES, zeroCounts, type OutcomeCounts, type UsageInterval } from './outcomes.js';
import type { UsageStore } from './store.js';

export const MAX_BUCKETS = 1_500;
const DAY_MS = 86_400_000;
const YEAR_MS = 366 * DAY_MS;
/** A read writes this instance's counters first, unless a read did so this recently. */
const READ_FLUSH_EVERY_MS = 1_000;

export interface UsageBucket {
  start: string;
  total: number;
  counts: OutcomeCounts;
}

const totalOf = (c: OutcomeCounts) => USAGE_OUTCOMES.reduce((n, o) => n + c[o], 0);

function add(into: OutcomeCounts, c: OutcomeCounts) {
  for (const o of USAGE_OUTCOMES) into[o] += c[o];
}

export function createUsageService(deps: {
  store: UsageStore;
  /** Whether a key exists (its usage is gone with it). */
  keyExists: (id: string) => Promise<boolean>;
  /** Written before a read, so this instance's own recent counts are in the answer. */
  flush: () => Promise<void>;
  now: () => Date;
  minutesKeptMs: number;
  hoursKeptMs: number;
  retentionDays: number;
}) {
  const { store } = deps;
  let flushedForReadAt = -Infinity;

  /** This instance's own counts into the answer; a dashboard polling the routes does not mean a write per read. */
  async function flushForRead() {
    const t = Date.now();
    if (t - flushedForReadAt < READ_FLUSH_EVERY_MS) return;
    flushedForReadAt = t;
    await deps.flush();
  }

  /** [from, to) from the query: defaults, order, and (for buckets) alignment and count. */
  function range(q: { from?: string; to?: string }, defaultSpanMs: number, interval?: UsageInterval) {
    const to = q.to ? new Date(q.to) : deps.now();
    const from = q.from ? new Date(q.from) : new Date(to.getTime() - defaultSpanMs);
    const problems: FieldError[] = [];
    if (from.getTime() >= to.getTime()) problems.push({ field: 'from', message: 'must be earlier than to' });
    // Nothing is counted ahead of time; and a bucket rounded up past year 9999 has no timestamp.
    if (to.getTime() > deps.now().getTime() + YEAR_MS) problems.push({ field: 'to', message: 'must be at most a year from now' });
    if (problems.length) throw new ValidationError(problems);
    if (!interval) return { from, to };
    const size = INTERVALS[interval];
    const start = Math.floor(from.getTime() / size) * size;
    const end = Math.ceil(to.getTime() / size) * size;
    const buckets = (end - start) / size;
    if (buckets > MAX_BUCKETS) {
      throw new ValidationError([
        { field: 'interval', message: `gives ${buckets} buckets between from and to; at most ${MAX_BUCKETS} are answered (choose a longer interval or a shorter range)` },
      ]);
    }
    return { from: new Date(start), to: new Date(end), buckets };
  }

  return {
    async forKey(keyId: string, q: { from?: string; to?: string; interval?: UsageInterval }) {
      const interval = q.interval ?? 'hour';
      const { from, to, buckets } = range(q, DAY_MS, interval) as { from: Date; to: Date; buckets: number };
      if (!(await deps.keyExists(keyId))) throw new AppError('API_KEY_NOT_FOUND');
      await flushForRead();
      const size = INTERVALS[interval];
      const out: UsageBucket[] = Array.from({ length: buckets }, (_, i) => ({ start: new Date(from.getTime() + i * size).toISOString(), total: 0, counts: zeroCounts() }));
      const totals = zeroCounts();
      for (const { index, counts } of await store.series(keyId, from, to, size)) {
        const b = out[index];
        if (!b) continue;
        add(b.counts, counts);
        add(totals, counts);
      }
      for (const b of out) b.total = totalOf(b.counts);
      return { keyId, from: from.toISOString(), to: to.toISOString(), interval, buckets: out, totals: { total: totalOf(totals), counts: totals } };
    },

    async top(q: { from?: string; to?: string; limit?: number }) {
      const { from, to } = range(q, DAY_MS);
      await flushForRead();
      const keys = await store.top(from, to, q.limit ?? 10);
      return { from: from.toISOString(), to: to.toISOString(), keys };
    },

    /** The scheduler's share: minutes into hours, hours into days (each at a boundary of what it makes), and the retention. */
    async maintain(at: Date): Promise<{ minutes: number; hours: number; pruned: number }> {
      const hourCut = Math.floor((at.getTime() - deps.minutesKeptMs) / INTERVALS.hour) * INTERVALS.hour;
      const dayCut = Math.floor((at.getTime() - deps.hoursKeptMs) / DAY_MS) * DAY_MS;
      const minutes = await store.rollUp('minute', 'hour', new Date(hourCut));
      const hours = await store.rollUp('hour', 'day', new Date(dayCut));
      const pruned = await store.prune(new Date(Math.floor((at.getTime() - deps.retentionDays * DAY_MS) / DAY_MS) * DAY_MS));
      return { minutes, hours, pruned };
    },
  };
}

export type UsageService = ReturnType<typeof createUsageService>;
