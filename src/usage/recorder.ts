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

interface MinuteCounts {
  minute: number;
  counts: Map<string, number[]>;
}

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
  let current = new Map<string, number[]>();
  /** Minutes no longer being counted, oldest first, waiting for their write. */
  let closed: MinuteCounts[] = [];
  let entries = 0;
  let dropped = 0;
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  let queued: Promise<void> | null = null;

  function closeCurrent(next: number) {
    if (current.size) closed.push({ minute, counts: current });
    current = new Map();
    minute = next;
  }

  /** Over the bound (the database has been refusing writes): the oldest minute goes. */
  function shed() {
    while (entries > deps.maxPending && closed.length) {
      const oldest = closed.shift()!;
      entries -= oldest.counts.size;
      dropped += oldest.counts.size;
      log.warn({ minute: new Date(oldest.minute * MINUTE_MS).toISOString(), keys: oldest.counts.size }, 'usage counts dropped: the database has not taken them and USAGE_MAX_PENDING is reached');
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

  function rowsOf(batch: MinuteCounts[]): UsageRow[] {
    const rows: UsageRow[] = [];
    for (const { minute: m, counts } of batch) {
      const at = new Date(m * MINUTE_MS);
      for (const [keyId, c] of counts) rows.push({ keyId, at, counts: c });
    }
    return rows;
  }

  /**
   * Writes every counter gathered so far, the current minute's included (its later counts add to
   * the same row). One write at a time; a failed batch goes back to be written with the next.
   */
  function flush(): Promise<void> {
    queued ??= writing.then(async () => {
      queued = null;
      closeCurrent(minute);
      const batch = closed;
      closed = [];
      const size = batch.reduce((n, b) => n + b.counts.size, 0);
      entries -= size;
      if (!size) return;
      const rows = rowsOf(batch);
      let written = 0;
      try {
        for (; written < rows.length; written += ROWS_PER_STATEMENT) await deps.store.add(rows.slice(written, written + ROWS_PER_STATEMENT));
      } catch (err) {
        log.warn({ err: { message: (err as Error).message }, rows: rows.length - written }, 'could not write usage counts; will retry');
        const left = new Map<number, Map<string, number[]>>();
        for (const r of rows.slice(written)) {
          const m = r.at.getTime() / MINUTE_MS;
          let counts = left.get(m);
          if (!counts) left.set(m, (counts = new Map()));
          counts.set(r.keyId, r.counts);
        }
        closed = [...[...left].map(([m, counts]) => ({ minute: m, counts })), ...closed];
        entries += rows.length - written;
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
      if (!deps.enabled) return;
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
