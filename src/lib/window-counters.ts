// Fixed-window counters, the arithmetic under every rate limit and failure budget: a counter
// starts at its first hit and resets `windowMs` later. In memory (synchronous, for one
// instance), or in Redis (shared by every instance), where each operation is one Lua script —
// increments are atomic there, so concurrent requests on any number of instances can never read
// the same count and both go ahead (the lost update a read-then-write would have).
import type { Redis } from 'ioredis';

export interface Hit {
  /** The count after this increment. */
  count: number;
  /** Milliseconds until the window resets. */
  resetMs: number;
}

export interface Counted {
  hits: Hit[];
  /** The counts of the names only read (0 when absent or expired). */
  reads: number[];
  /** Answered by this instance's memory (Redis failed): what is taken back must go there too. */
  local: boolean;
}

export interface WindowCounters {
  /** Adds one to `name`; the count after. Synchronous in memory (the hot path of every request with a key). */
  incrOne(name: string): Hit | Promise<Hit>;
  /** Adds one to each of `names` and reads `read`, atomically as a whole. */
  incr(names: readonly string[], read?: readonly string[]): Counted | Promise<Counted>;
  /** Takes one back from each name that still exists; `local` as `incr` said. */
  decr(names: readonly string[], local?: boolean): void | Promise<void>;
}

/** The in-memory counters: the same operations, synchronously. */
export interface MemoryCounters extends WindowCounters {
  incrOne(name: string): Hit;
  incr(names: readonly string[], read?: readonly string[]): Counted;
  decr(names: readonly string[]): void;
  readonly size: number;
}

export function createMemoryCounters(windowMs: number, maxEntries: number, now: () => number = Date.now): MemoryCounters {
  // Every counter lives one window from its (re)start and is (re)inserted then, so Map order is
  // expiry order: the expired, and beyond the bound the oldest, are always at the front.
  const counts = new Map<string, { count: number; resetAt: number }>();

  function trim(at: number) {
    for (const [name, c] of counts) {
      if (c.resetAt > at && counts.size < maxEntries) break;
      counts.delete(name);
    }
  }

  function hit(name: string, at: number): Hit {
    let c = counts.get(name);
    if (c === undefined || c.resetAt <= at) {
      if (c !== undefined) counts.delete(name);
      trim(at);
      c = { count: 0, resetAt: at + windowMs };
      counts.set(name, c);
    }
    c.count++;
    return { count: c.count, resetMs: c.resetAt - at };
  }

  function read(name: string, at: number): number {
    const c = counts.get(name);
    return c !== undefined && c.resetAt > at ? c.count : 0;
  }

  return {
    incrOne: (name) => hit(name, now()),
    incr(names, reads = []) {
      const at = now();
      return { hits: names.map((name) => hit(name, at)), reads: reads.map((name) => read(name, at)), local: true };
    },
    decr(names) {
      const at = now();
      for (const name of names) {
        const c = counts.get(name);
        if (c && c.resetAt > at && c.count > 0) c.count--;
      }
    },
    get size() {
      return counts.size;
    },
  };
}

// KEYS: the counters to increment, then those to read; ARGV[1]: the window in ms, ARGV[2]: how
// many KEYS to increment. Returns count, ttl pairs, then the counts read.
const INCR_SCRIPT = `
local out = {}
local n = tonumber(ARGV[2])
for i = 1, n do
  local key = KEYS[i]
  local c = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if c == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[#out + 1] = c
  out[#out + 1] = ttl
end
for i = n + 1, #KEYS do
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
return out`;

const DECR_SCRIPT = `
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0`;

type ScriptedRedis = Redis & {
  keywardIncr(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
  keywardDecr(numKeys: number, ...args: string[]): Promise<number>;
};

/**
 * Counters in Redis under `namespace`. When Redis fails, `fallback(name)` (this instance's
 * memory, one store per scope) answers instead and `onError` is told: the budgets then hold per
 * instance rather than not at all.
 */
export function createRedisCounters(
  redis: Redis,
  opts: { namespace: string; windowMs: number; fallback: (name: string) => MemoryCounters; onError: (err: Error) => void },
): WindowCounters {
  const r = redis as ScriptedRedis;
  if (typeof r.keywardIncr !== 'function') {
    redis.defineCommand('keywardIncr', { lua: INCR_SCRIPT });
    redis.defineCommand('keywardDecr', { lua: DECR_SCRIPT });
  }
  const keys = (names: readonly string[]) => names.map((n) => opts.namespace + n);
  function locally(names: readonly string[], reads: readonly string[]): Counted {
    const hits = names.map((name) => opts.fallback(name).incrOne(name));
    const read = reads.map((name) => opts.fallback(name).incr([], [name]).reads[0]);
    return { hits, reads: read, local: true };
  }
  const counters: WindowCounters = {
    async incrOne(name) {
      return (await counters.incr([name])).hits[0];
    },
    async incr(names, reads = []) {
      try {
        const flat = await r.keywardIncr(names.length + reads.length, ...keys(names), ...keys(reads), opts.windowMs, names.length);
        return {
          hits: names.map((_, i) => ({ count: Number(flat[2 * i]), resetMs: Number(flat[2 * i + 1]) })),
          reads: reads.map((_, i) => Number(flat[2 * names.length + i])),
          local: false,
        };
      } catch (err) {
        opts.onError(err as Error);
        return locally(names, reads);
      }
    },
    async decr(names, local = false) {
      if (local) {
        for (const name of names) opts.fallback(name).decr([name]);
        return;
      }
      try {
        await r.keywardDecr(names.length, ...keys(names));
      } catch (err) {
        opts.onError(err as Error); // the count stays: a budget spent too early, never one too many
      }
    },
  };
  return counters;
}
