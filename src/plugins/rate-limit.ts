// Rate limits and failure budgets, counted in fixed windows (lib/window-counters.ts) — in
// Redis when REDIS_URL is set, so every instance spends one budget; in memory otherwise:
//   key    — requests per authenticated key;
//   ip     — failed authentications per client network (IPv6 per /64); never refuses a key
//            that verifies;
//   prefix — wrong secrets per real key prefix, reserved before argon2 (README "Wrong-secret floods").
// request-auth.ts applies them.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { Config } from '../config.js';
import { RateLimitedError } from '../lib/errors.js';
import { createMemoryCounters, createRedisCounters, type Hit, type WindowCounters } from '../lib/window-counters.js';

export type { Hit } from '../lib/window-counters.js';

export type Scope = 'key' | 'ip' | 'prefix';

export interface RateLimits {
  readonly max: Record<Scope, number>;
  /** One request by a key that verified; its budget after it. */
  keyUse(keyId: string): Hit | Promise<Hit>;
  /** One failed authentication from a client network; its budget after it. */
  addressFailure(network: string): Hit | Promise<Hit>;
  /**
   * Just before argon2: one attempt counted against the prefix's and the network's failure
   * budgets at once, atomically ([prefix, network]). `release` takes it back when the secret matched.
   */
  reserve(prefix: string, network: string): Hit[] | Promise<Hit[]>;
  release(prefix: string, network: string): void | Promise<void>;
  /** Whether this instance has seen the prefix's budget spent in its current window. */
  isLocked(prefix: string): boolean;
  lock(prefix: string, resetMs: number): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    rateLimits: RateLimits | null;
  }
}

/** Counters held in memory at most (the oldest go first beyond it: a flood cannot grow the heap without bound). */
const MAX_MEMORY_COUNTERS = 200_000;

/** The RateLimit-* headers of a budget after a hit. */
export function budgetHeaders(max: number, hit: Hit): Record<string, string> {
  return {
    'ratelimit-limit': String(max),
    'ratelimit-remaining': String(Math.max(0, max - hit.count)),
    'ratelimit-reset': String(Math.max(1, Math.ceil(hit.resetMs / 1000))),
  };
}

/** The 429 of a spent budget; `what` names it ("requests for this API key"). */
export function rateLimited(max: number, hit: Hit, what: string): RateLimitedError {
  return new RateLimitedError(Math.max(1, Math.ceil(hit.resetMs / 1000)), budgetHeaders(max, hit), what);
}

async function rateLimitPlugin(app: FastifyInstance, opts: { config: Config }) {
  const rl = opts.config.rateLimit;
  if (!rl.enabled) {
    app.decorate('rateLimits', null);
    return;
  }
  /** This instance's counters, one store per scope (no name to build on the hot path). */
  const local = {
    key: createMemoryCounters(rl.windowMs, MAX_MEMORY_COUNTERS),
    ip: createMemoryCounters(rl.windowMs, MAX_MEMORY_COUNTERS),
    prefix: createMemoryCounters(rl.windowMs, MAX_MEMORY_COUNTERS),
  };
  let shared: WindowCounters | null = null;
  if (rl.redisUrl) {
    // Fail fast rather than queue when Redis is away: this instance's own counters answer meanwhile.
    const redis = new Redis(rl.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000 });
    let warnedAt = 0;
    const onError = (err: Error) => {
      if (Date.now() - warnedAt < 10_000) return;
      warnedAt = Date.now();
      app.log.warn({ err: { message: err.message } }, 'rate-limit Redis error; budgets are counted per instance meanwhile');
    };
    redis.on('error', onError);
    app.addHook('onClose', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    const fallback = createMemoryCounters(rl.windowMs, MAX_MEMORY_COUNTERS);
    shared = createRedisCounters(redis, { namespace: 'keyward-rl:', windowMs: rl.windowMs, fallback, onError });
    app.log.info('rate limits shared through Redis');
  }
  /** Prefixes whose budget this instance saw spent, and until when (real prefixes only, so few). */
  const locked = new Map<string, number>();
  // Prefixed names, so an address can never name another budget (e.g. a key's).
  app.decorate('rateLimits', {
    max: { key: rl.keyMax, ip: rl.ipMax, prefix: rl.prefixMax },
    keyUse: shared ? (keyId) => shared.incrOne(`key:${keyId}`) : (keyId) => local.key.incrOne(keyId),
    addressFailure: (network) => (shared ? shared.incrOne(`ip:${network}`) : local.ip.incrOne(network)),
    reserve: (prefix, network) => (shared ? shared.incr([`prefix:${prefix}`, `ip:${network}`]) : [local.prefix.incrOne(prefix), local.ip.incrOne(network)]),
    release(prefix, network) {
      if (shared) return shared.decr([`prefix:${prefix}`, `ip:${network}`]);
      local.prefix.decr([prefix]);
      local.ip.decr([network]);
    },
    isLocked(prefix) {
      const until = locked.get(prefix);
      if (until === undefined) return false;
      if (until > Date.now()) return true;
      locked.delete(prefix);
      return false;
    },
    lock(prefix, resetMs) {
      if (locked.size >= MAX_MEMORY_COUNTERS) locked.clear();
      locked.set(prefix, Date.now() + resetMs);
    },
  } satisfies RateLimits);
}

export default fp(rateLimitPlugin, { name: 'keyward-rate-limit', fastify: '5.x' });
