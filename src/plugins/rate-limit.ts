// Rate limits with @fastify/rate-limit (its Redis store when REDIS_URL is set, so every
// instance shares one budget): per authenticated key; per client IP for requests that carry no
// valid key; and per real key prefix for wrong secrets, the budget that protects argon2. The
// auth hook applies them (src/plugins/auth.ts).
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { Config } from '../config.js';
import { presentedKey } from '../auth/authenticator.js';
import { keyPrefixOf } from '../auth/key-format.js';
import { clientNetwork } from '../lib/client-ip.js';
import { RateLimitedError } from '../lib/errors.js';

type Check = (req: FastifyRequest, opts?: { increment?: boolean }) => Promise<{
  isAllowed: boolean;
  isExceeded: boolean;
  max?: number;
  remaining?: number;
  ttlInSeconds?: number;
}>;

export interface RateLimits {
  /** Per authenticated key. */
  key: Check;
  /** Per client IP (IPv6 per /64): failed authentications. Never refuses a key that verifies. */
  ip: Check;
  /** Per presented key prefix (one that matches a stored key): wrong secrets, peeked before argon2. */
  prefix: Check;
}

declare module 'fastify' {
  interface FastifyInstance {
    rateLimits: RateLimits | null;
  }
}


const SCOPES = ['key', 'ip', 'prefix'] as const;

/**
 * Applies one limit: sets the RateLimit-* headers, throws 429 when over. With
 * `increment: false` it only looks (the budget is spent later, on failure), counting `reserved`
 * requests already under way as spent.
 */
export async function enforce(
  check: Check,
  req: FastifyRequest,
  reply: FastifyReply,
  what: string,
  opts: { increment?: boolean; reserved?: number } = {},
) {
  const increment = opts.increment ?? true;
  const r = await check(req, { increment });
  if (r.isAllowed || r.max === undefined) return;
  const remaining = Math.max(0, (r.remaining ?? 0) - (opts.reserved ?? 0));
  const headers = {
    'ratelimit-limit': String(r.max),
    'ratelimit-remaining': String(remaining),
    'ratelimit-reset': String(r.ttlInSeconds ?? 0),
  };
  // A look reports the budget before this request; it is over once it is used up.
  const over = increment ? r.isExceeded : remaining <= 0;
  if (over) {
    const limits = req.server.rateLimits;
    req.server.metrics.rateLimited(SCOPES.find((scope) => limits?.[scope] === check) ?? 'ip');
    throw new RateLimitedError(Math.max(1, r.ttlInSeconds ?? 1), headers, what);
  }
  // A look that lets the request through says nothing yet: the reply carries the headers of the
  // budget it ends up spending (the key's, or the address's on failure).
  if (increment) reply.headers(headers);
}

/** The prefix of the key a request presents (the prefix budget is only consulted for well-formed keys). */
export function attemptedPrefix(req: FastifyRequest): string {
  try {
    return keyPrefixOf(presentedKey(req.headers) ?? '');
  } catch {
    return '';
  }
}

async function rateLimitPlugin(app: FastifyInstance, opts: { config: Config }) {
  const rl = opts.config.rateLimit;
  if (!rl.enabled) {
    app.decorate('rateLimits', null);
    return;
  }
  let redis: Redis | undefined;
  if (rl.redisUrl) {
    // Fail fast rather than queue when Redis is away: the limits then fail open (logged).
    redis = new Redis(rl.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000 });
    redis.on('error', (err) => app.log.warn({ err: { message: err.message } }, 'rate-limit Redis error; limits fail open meanwhile'));
    app.addHook('onClose', async () => {
      await redis!.quit().catch(() => redis!.disconnect());
    });
    app.log.info('rate limits shared through Redis');
  }
  await app.register(rateLimit, {
    global: false,
    redis,
    nameSpace: 'keyward-rl-',
    skipOnError: true,
  });
  const base = { timeWindow: rl.windowMs };
  app.decorate('rateLimits', {
    key: app.createRateLimit({ ...base, max: rl.keyMax, keyGenerator: (req) => `key:${req.principal?.id}` }) as Check,
    // Prefixed so an address can never name another budget (e.g. a key's).
    ip: app.createRateLimit({ ...base, max: rl.ipMax, keyGenerator: (req) => `ip:${clientNetwork(req.ip)}` }) as Check,
    prefix: app.createRateLimit({ ...base, max: rl.prefixMax, keyGenerator: (req) => `prefix:${attemptedPrefix(req)}` }) as Check,
  });
}

export default fp(rateLimitPlugin, { name: 'keyward-rate-limit', fastify: '5.x' });
