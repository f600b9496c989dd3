// Rate limits and failure budgets, counted in fixed windows (lib/window-counters.ts) — in
// Redis when REDIS_URL is set, so every instance spends one budget; in memory otherwise:
//   key    — requests per authenticated key;
//   ip     — failed authentications per client network (IPv6 per /64); never refuses a key
//            that verifies;
//   prefix — wrong secrets per real key prefix, reserved before argon2 (README "Wrong-secret floods");
// and, beside the network's budget, its failures alone (without attempts under way), which pick
// the lane its argon2 work waits in. request-auth.ts applies them.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { Config } from '../config.js';
import { RateLimitedError } from '../lib/errors.js';
import { createMemoryCounters, createRedisCounters, type Hit, type WindowCounters } from '../lib/window-counters.js';

export type { Hit } from '../lib/window-counters.js';

export type Scope = 'key' | 'ip' | 'prefix' | 'revoke';

/** One attempt counted against its prefix's and its network's budgets before argon2. */
export interface Reservation {
  prefix: Hit;
  network: Hit;
  /** The network's failures (not attempts under way) in its window so far. */
  networkFailures: number;
  /** Counted in this instance's memory (Redis failed): taken back there too. */
  local: boolean;
  /** After this (Date.now()) a window may have rolled over: nothing is taken back from the next one. */
  until: number;
}

/** How a reserved attempt ended: the secret matched (or argon2 never ran), it failed, or the network's budget refused it. */
export type Outcome = 'matched' | 'failed' | 'refusedByNetwork';

export interface RateLimits {
  readonly max: Record<Scope, number>;
  /** One request by a key that verified, counted against its own limit when it has one; its budget after it. */
  keyUse(keyId: string, own?: { windowSeconds: number } | null): Hit | Promise<Hit>;
  /** One leaked-key report from a client network; its budget after it (max.revoke). */
  reportUse(network: string): Hit | Promise<Hit>;
  /** One failed authentication from a client network that held no reservation; its budget after it. */
  addressFailure(network: string): Hit | Promise<Hit>;
  /** Just before argon2: one attempt counted against the prefix's and the network's budgets at once, atomically. */
  reserve(prefix: string, network: string): Reservation | Promise<Reservation>;
  /** Ends a reservation: a match takes the attempt back, a failure is recorded as one. */
  settle(prefix: string, network: string, reservation: Reservation, outcome: Outcome): void | Promise<void>;
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
  /** This instance's counters, one store per scope (no name to build on the hot path; a flood of one cannot evict another). */
  const memory = () => createMemoryCounters(rl.windowMs, MAX_MEMORY_COUNTERS);
  const local = { key: memory(), ip: memory(), prefix: memory(), ipFailures: memory(), revoke: memory() };
  let shared: WindowCounters | null = null;
  let redis: Redis | null = null;
  let onRedisError: (err: Error) => void = () => {};
  if (rl.redisUrl) {
    // Fail fast rather than queue or hang when Redis is away or silent: this instance's own
    // counters answer meanwhile. Unanswered commands are not resent after a reconnect: an
    // increment that did run would count twice.
    const client = new Redis(rl.redisUrl, {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      connectTimeout: 2_000,
      commandTimeout: rl.redisCommandTimeoutMs,
      autoResendUnfulfilledCommands: false,
    });
    let warnedAt = 0;
    const onError = (err: Error) => {
      if (Date.now() - warnedAt < 10_000) return;
      warnedAt = Date.now();
      app.log.warn({ err: { message: err.message } }, 'rate-limit Redis error; budgets are counted per instance meanwhile');
    };
    redis = client;
    onRedisError = onError;
    client.on('error', onError);
    app.addHook('onClose', async () => {
      await client.quit().catch(() => client.disconnect());
    });
    const fallbacks = { key: memory(), ip: memory(), prefix: memory(), fail: memory(), revoke: memory() };
    const fallback = (name: string) => fallbacks[name.slice(0, name.indexOf(':')) as keyof typeof fallbacks];
    shared = createRedisCounters(client, { namespace: 'keyward-rl:', windowMs: rl.windowMs, fallback, onError });
    // Commands sent before the connection is ready fail at once (no offline queue) and would be
    // counted per instance: the first requests wait for Redis, at most its connect timeout.
    if (client.status !== 'ready') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise((r) => client.once('ready', r)), new Promise((r) => (timer = setTimeout(r, 2_000)))]);
      clearTimeout(timer);
    }
    app.log.info({ ready: client.status === 'ready' }, 'rate limits shared through Redis');
  }

  async function reserveShared(counters: WindowCounters, prefix: string, network: string): Promise<Reservation> {
    const at = Date.now();
    const r = await counters.incr([`prefix:${prefix}`, `ip:${network}`], [`fail:ip:${network}`]);
    const [p, n] = r.hits;
    return { prefix: p, network: n, networkFailures: r.reads[0], local: r.local, until: at + Math.min(p.resetMs, n.resetMs) };
  }

  function settleLocally(prefix: string, network: string, r: Reservation, outcome: Outcome) {
    const current = Date.now() < r.until;
    if (outcome === 'matched') {
      if (current) {
        local.prefix.decr([prefix]);
        local.ip.decr([network]);
      }
      return;
    }
    if (outcome === 'refusedByNetwork' && current) local.prefix.decr([prefix]);
    local.ipFailures.incrOne(network);
  }

  async function settleShared(counters: WindowCounters, prefix: string, network: string, r: Reservation, outcome: Outcome) {
    const current = Date.now() < r.until;
    if (outcome === 'matched') {
      if (current) await counters.decr([`prefix:${prefix}`, `ip:${network}`], r.local);
      return;
    }
    if (outcome === 'refusedByNetwork' && current) await counters.decr([`prefix:${prefix}`], r.local);
    await counters.incr([`fail:ip:${network}`]);
  }

  /**
   * Keys with a limit of their own count in windows of their own length: one store per distinct
   * length (in Redis under its own namespace), made when first needed.
   */
  const ownWindows = new Map<number, (keyId: string) => Hit | Promise<Hit>>();
  function ownWindow(windowMs: number) {
    let count = ownWindows.get(windowMs);
    if (count) return count;
    const mem = createMemoryCounters(windowMs, MAX_MEMORY_COUNTERS);
    if (redis) {
      const counters = createRedisCounters(redis, { namespace: `keyward-rl:w${windowMs}:`, windowMs, fallback: () => mem, onError: onRedisError });
      count = (keyId) => counters.incrOne(`key:${keyId}`);
    } else count = (keyId) => mem.incrOne(keyId);
    if (ownWindows.size >= 1_000) ownWindows.clear(); // distinct lengths are set by administrators: few
    ownWindows.set(windowMs, count);
    return count;
  }
  const defaultKeyUse = shared ? (keyId: string) => shared.incrOne(`key:${keyId}`) : (keyId: string) => local.key.incrOne(keyId);

  /** Prefixes whose budget this instance saw spent, and until when (real prefixes only, so few). */
  const locked = new Map<string, number>();
  // Prefixed names, so an address can never name another budget (e.g. a key's).
  app.decorate('rateLimits', {
    max: { key: rl.keyMax, ip: rl.ipMax, prefix: rl.prefixMax, revoke: rl.revokeMax },
    reportUse: shared ? (network) => shared.incrOne(`revoke:${network}`) : (network) => local.revoke.incrOne(network),
    keyUse(keyId, own) {
      if (!own || own.windowSeconds * 1000 === rl.windowMs) return defaultKeyUse(keyId);
      return ownWindow(own.windowSeconds * 1000)(keyId);
    },
    addressFailure(network) {
      if (shared) return Promise.resolve(shared.incr([`ip:${network}`, `fail:ip:${network}`])).then((r) => r.hits[0]);
      local.ipFailures.incrOne(network);
      return local.ip.incrOne(network);
    },
    reserve(prefix, network) {
      if (shared) return reserveShared(shared, prefix, network);
      const at = Date.now();
      const p = local.prefix.incrOne(prefix);
      const n = local.ip.incrOne(network);
      const networkFailures = local.ipFailures.incr([], [network]).reads[0];
      return { prefix: p, network: n, networkFailures, local: true, until: at + Math.min(p.resetMs, n.resetMs) };
    },
    settle: (prefix, network, r, outcome) => (shared ? settleShared(shared, prefix, network, r, outcome) : settleLocally(prefix, network, r, outcome)),
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
