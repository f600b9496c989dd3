// Per-key usage counts, off the request path: each authentication or verification of a known key
// adds one to an in-memory counter for (key, minute, outcome); the counters are written in
// batches (USAGE_FLUSH_MS) and at shutdown, adding to what other instances wrote for the same
// minute. The hot path is a clock read, a Map lookup and an increment: no allocation once a key
// has a counter for the minute.
import type { FastifyBaseLogger } from 'fastify';
import { OUTCOME_INDEX, type UsageOutcome } from './outcomes.js';
import type { UsageStore, UsageRow } from './store.js';

const MINUTE_MS = 60_000;
/** Rows per INSERT: a long outage's backlog is written in statements of bounded size. */
const ROWS_PER_STATEMENT = 5_000;

/** Counters by outcome (USAGE_OUTCOMES order), by key. */
type Counters = Map<string, number[]>;

export function createUsageRecorder(deps: {
  store: Pick<UsageStore, 'add'>;
  log: FastifyBaseLogger;
  enabled: boolean;
  flushEveryMs: number;
  /** Key-minutes held while writes fail; beyond, the oldest minute is dropped. */
  maxPending: number;
  now?: () => Date;
}) {
  const { log, now } = deps;
  let enabled = deps.enabled;
  let minute = -1;
  let current: Counters = new Map();
  /**
   * Minutes no longer being counted into, waiting for their write: one entry per key and minute
   * however often a minute comes back (a flush cuts the current minute off; a failed write puts
   * its minutes back), counts added together.
   */
  let closed = new Map<number, Counters>();
  /** Key-minutes held: current's and closed's entries (the bound's measure). */
  let entries = 0;
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  let queued: Promise<void> | null = null;

  /** Adds `counts` to (key, minute) in closed; true when that entry is new. */
  function addClosed(m: number, keyId: string, counts: number[]): boolean {
    let byKey = closed.get(m);
    if (!byKey) closed.set(m, (byKey = new Map()));
    const held = byKey.get(keyId);
    if (held === undefined) {
      byKey.set(keyId, counts);
      return true;
    }
    for (let i = 0; i < counts.length; i++) held[i]! += counts[i]!;
    return false;
  }

  function closeCurrent(next: number) {
    if (current.size) {
      if (!closed.has(minute)) closed.set(minute, current);
      else for (const [keyId, c] of current) if (!addClosed(minute, keyId, c)) entries--;
    }
    current = new Map();
    minute = next;
  }

  /** Over the bound (the database has been refusing writes): the oldest minute goes. */
  function shed() {
    while (entries > deps.maxPending && closed.size) {
      const oldest = Math.min(...closed.keys());
      const size = closed.get(oldest)!.size;
      closed.delete(oldest);
      entries -= size;
      dropped += size;
      log.warn({ minute: new Date(oldest * MINUTE_MS).toISOString(), keys: size }, 'usage counts dropped: the database has not taken them and USAGE_MAX_PENDING is reached');
    }
  }

  function count(keyId: string, outcome: number) {
    if (!enabled) return;
    const m = Math.floor((now ? now().getTime() : Date.now()) / MINUTE_MS);
    if (m !== minute) closeCurrent(m);
    let c = current.get(keyId);
    if (c === undefined) {
      current.set(keyId, (c = [0, 0, 0, 0, 0, 0]));
      if (++entries > deps.maxPending) shed();
    }
    c[outcome]!++;
  }

  /**
   * Writes every counter gathered so far, the current minute's included (its later counts add to
   * the same row). One write at a time; a failed batch goes back, added to what came meanwhile.
   */
  function flush(): Promise<void> {
    queued ??= writing.then(async () => {
      queued = null;
      closeCurrent(minute);
      const batch = closed;
      closed = new Map();
      const rows: UsageRow[] = [];
      for (const [m, byKey] of batch) for (const [keyId, counts] of byKey) rows.push({ keyId, at: new Date(m * MINUTE_MS), counts });
      entries -= rows.length;
      if (!rows.length) return;
      let written = 0;
      try {
        for (; written < rows.length; written += ROWS_PER_STATEMENT) await deps.store.add(rows.slice(written, written + ROWS_PER_STATEMENT));
      } catch (err) {
        log.warn({ err: { message: (err as Error).message }, rows: rows.length - written }, 'could not write usage counts; will retry');
        for (const r of rows.slice(written)) if (addClosed(r.at.getTime() / MINUTE_MS, r.keyId, r.counts)) entries++;
        shed();
      }
    });
    writing = queued;
    return queued;
  }

  return {
    /** Counts one use of a known key; `outcome` is an index (OUTCOME_INDEX). */
    count,
    /** The same, by name (the verify route's verdict). */
    countOutcome(keyId: string, outcome: string) {
      const i = OUTCOME_INDEX[outcome as UsageOutcome];
      if (i !== undefined) count(keyId, i);
    },
    flush,
    /** Switches counting (the bench compares the two in one process). */
    setEnabled(on: boolean) {
      enabled = on;
    },
    get enabled() {
      return enabled;
    },
    /** Key-minutes in memory waiting for their write, and those dropped so far. */
    get pending() {
      return entries;
    },
    get dropped() {
      return dropped;
    },
    start() {
      timer ??= setInterval(() => void flush(), deps.flushEveryMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await flush();
    },
  };
}

export type UsageRecorder = ReturnType<typeof createUsageRecorder>;
