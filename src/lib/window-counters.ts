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

export interface WindowCounters {
  /** Adds one to `name`; the count after. Synchronous in memory (the hot path of every request with a key). */
  incrOne(name: string): Hit | Promise<Hit>;
  /** Adds one to each name, atomically as a whole; the counts after. Synchronous in memory. */
  incr(names: readonly string[]): Hit[] | Promise<Hit[]>;
  /** Takes one back from each name that still exists (a reservation that turned out not to count). */
  decr(names: readonly string[]): void | Promise<void>;
}

/** The in-memory counters: the same operations, synchronously. */
export interface MemoryCounters extends WindowCounters {
  incrOne(name: string): Hit;
  incr(names: readonly string[]): Hit[];
  decr(names: readonly string[]): void;
  readonly size: number;
}

export function createMemoryCounters(windowMs: number, maxEntries: number, now: () => number = Date.now): MemoryCounters {
  const counts = new Map<string, { count: number; resetAt: number }>();
  let sweptAt = now();

  /** Drops expired counters; when still full, the oldest go (Map order is insertion order). */
  function sweep(at: number) {
    sweptAt = at;
    for (const [name, c] of counts) if (c.resetAt <= at) counts.delete(name);
    for (const name of counts.keys()) {
      if (counts.size < maxEntries) break;
      counts.delete(name);
    }
  }

  function hit(name: string, at: number): Hit {
    let c = counts.get(name);
    if (c === undefined || c.resetAt <= at) {
      if (counts.size >= maxEntries || at - sweptAt > windowMs) sweep(at);
      c = { count: 0, resetAt: at + windowMs };
      counts.set(name, c);
    }
    c.count++;
    return { count: c.count, resetMs: c.resetAt - at };
  }

  return {
    incrOne: (name) => hit(name, now()),
    incr(names) {
      const at = now();
      return names.map((name) => hit(name, at));
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

// KEYS: the counters; ARGV[1]: the window in ms. Returns count, ttl pairs.
const INCR_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  local ttl = redis.call('PTTL', key)
  if n == 1 or ttl < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out`;

const DECR_SCRIPT = `
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 and tonumber(redis.call('GET', key)) > 0 then redis.call('DECR', key) end
end
return 0`;

type ScriptedRedis = Redis & {
  keywardIncr(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
  keywardDecr(numKeys: number, ...args: string[]): Promise<number>;
};

/**
 * Counters in Redis under `namespace`. When Redis fails, `fallback` (this instance's memory)
 * answers instead and `onError` is told: the budgets then hold per instance rather than not at all.
 */
export function createRedisCounters(
  redis: Redis,
  opts: { namespace: string; windowMs: number; fallback: WindowCounters; onError: (err: Error) => void },
): WindowCounters {
  const r = redis as ScriptedRedis;
  if (typeof r.keywardIncr !== 'function') {
    redis.defineCommand('keywardIncr', { lua: INCR_SCRIPT });
    redis.defineCommand('keywardDecr', { lua: DECR_SCRIPT });
  }
  const keys = (names: readonly string[]) => names.map((n) => opts.namespace + n);
  const counters: WindowCounters = {
    async incrOne(name) {
      return (await counters.incr([name]))[0];
    },
    async incr(names) {
      try {
        const flat = await r.keywardIncr(names.length, ...keys(names), opts.windowMs);
        return names.map((_, i) => ({ count: Number(flat[2 * i]), resetMs: Number(flat[2 * i + 1]) }));
      } catch (err) {
        opts.onError(err as Error);
        return opts.fallback.incr(names);
      }
    },
    async decr(names) {
      try {
        await r.keywardDecr(names.length, ...keys(names));
      } catch (err) {
        opts.onError(err as Error);
        await opts.fallback.decr(names);
      }
    },
  };
  return counters;
}
