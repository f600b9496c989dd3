// Request authentication as one unit: which key a request carries, whether it verifies, the
// failure budgets (per client network, and per real key prefix before argon2), the lane its
// argon2 work waits in, the per-key rate limit, the delay before a failure is answered, security
// events and the auth-outcome metric — everything between a request and its principal. Routes
// declare `authorize(permission)` (plugins/auth.ts), which calls this; code that is not a hook
// calls `authenticate`. README "Wrong-secret floods" explains the budgets and lanes.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AddressRefusedError, presentedKey, RefusedKeyError, refusedUnverified, type Identified, type VerificationGuard } from '../auth/authenticator.js';
import { digestKey } from '../auth/key-cache.js';
import { grants, type Permission } from '../auth/permissions.js';
import type { Principal } from '../auth/principal.js';
import { clientNetwork } from '../lib/client-ip.js';
import { AppError, AuthError, RateLimitedError } from '../lib/errors.js';
import { OUTCOME_INDEX } from '../usage/outcomes.js';
import { budgetHeaders, rateLimited, type Hit, type RateLimits } from './rate-limit.js';

export interface RequestAuthenticator {
  /**
   * The check behind `authorize`: sets `req.principal` and calls `done()`, or `done(err)`.
   * A fresh cache hit completes synchronously unless the key's budget lives in Redis.
   */
  check(req: FastifyRequest, reply: FastifyReply, permission: Permission | undefined, done: (err?: Error) => void, ownBudget?: boolean): void;
  /** The same, as a promise: the principal, or the error the request is refused with. */
  authenticate(req: FastifyRequest, reply: FastifyReply, permission?: Permission): Promise<Principal>;
  /**
   * A key presented to another service (POST /apikeys/verify): the same cache, failure budgets,
   * lanes, security events and failure delay as a key presented to keyward, with `clientIp` as
   * the client's address; the key's own budget is spent instead of the caller's. Resolves with
   * the principal or the refusal (and the principal, when its secret verified).
   */
  verifyPresented(key: string, clientIp: string, reply: FastifyReply, allowlistIp: string | null): Promise<{ principal?: Principal; refusal?: AppError }>;
  /**
   * A secret reported as leaked (POST /apikeys/revoke): which key it is, if any, under the same
   * cache, failure budgets and lanes as authentication, without using the key. A spent budget
   * does not refuse it (then anyone could keep a leaked key's prefix locked so its report never
   * lands): it waits in the suspect lane, whose share of argon2 time is capped. Never throws for
   * a wrong or refused secret: the reporter is told nothing either way.
   */
  identifyReported(key: string, clientIp: string): Promise<Identified>;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    requestAuth: RequestAuthenticator;
  }
}

const NO_VALID_KEY = 'requests without a valid API key from this address';

/**
 * The usage outcome of a refused request whose key is known (its secret verified): which key and
 * which counter; null for a wrong or missing key, or a refusal before its key was checked.
 */
function refusedUse(principal: Principal | null, err: Error): [keyId: string, outcome: number] | null {
  if (err instanceof RefusedKeyError) return [err.principal.id, err.code === 'API_KEY_DISABLED' ? OUTCOME_INDEX.DISABLED : OUTCOME_INDEX.EXPIRED];
  if (err instanceof AddressRefusedError) return [err.principal.id, OUTCOME_INDEX.IP_NOT_ALLOWED];
  if (principal === null) return null;
  if (err instanceof AppError && err.code === 'FORBIDDEN') return [principal.id, OUTCOME_INDEX.INSUFFICIENT_PERMISSIONS];
  if (err instanceof RateLimitedError && err.fromFailureBudget !== true) return [principal.id, OUTCOME_INDEX.RATE_LIMITED];
  return null;
}

/** The last key a connection presented and its digest: a keep-alive client repeats its key, and the digest is the dearest step of a cache hit. */
const LAST_DIGEST = Symbol('keyward.lastDigest');
type Remembering = { [LAST_DIGEST]?: { key: string; digest: string } };

function digestFor(socket: Remembering, key: string): string {
  const last = socket[LAST_DIGEST];
  // Plain comparison: what it could leak by timing is this connection's own previous key.
  if (last !== undefined && last.key === key) return last.digest;
  const digest = digestKey(key);
  socket[LAST_DIGEST] = { key, digest };
  return digest;
}

function requirePermission(principal: Principal, permission?: Permission) {
  if (permission && !principal.permissions.has(permission) && !grants(principal.permissions, permission)) {
    throw new AppError('FORBIDDEN', `This requires the ${permission} permission, which your key does not have.`);
  }
}

/** Failures answered only after the delay: a guess, or an address out of guesses. A key's own limit, 403 and 503 are not. */
const isDelayedFailure = (err: Error, keyPresented: boolean) =>
  keyPresented && (err instanceof AuthError || (err instanceof RateLimitedError && err.fromFailureBudget === true));

async function requestAuthPlugin(app: FastifyInstance, opts: { failureDelayMs: number }) {
  const { services, metrics } = app;
  const { usage } = services;
  const limits: RateLimits | null = app.rateLimits;
  const max = limits?.max;

  /** The key's own budget after one more request: its headers, or its 429. */
  function spendKeyBudget(reply: FastifyReply, hit: Hit, principal: Principal) {
    const limit = keyLimit(principal);
    if (hit.count > limit) {
      metrics.rateLimited('key');
      throw rateLimited(limit, hit, 'requests for this API key');
    }
    // The budget's headers once half of it is spent, when a client pacing itself needs them;
    // before that they would add three headers to every request for nothing (README "Rate limits").
    if (hit.count * 2 >= limit) reply.headers(budgetHeaders(limit, hit));
  }

  /** A verified key's request limit per window: its own, or the server's default. */
  const keyLimit = (p: Principal) => p.rateLimit?.limit ?? max!.key;

  /** Whether a verified key's own budget is counted: the infrastructure key is exempt from the default, not from a limit of its own. */
  const counted = (p: Principal) => !p.isInfrastructureKey || p.rateLimit !== null;

  /**
   * The failure budgets' say over one uncached attempt. Per attempt, one atomic reservation
   * counts it against its prefix and its network before argon2: a prefix whose budget is spent
   * is refused unverified (and remembered here as locked until its window ends); a network
   * whose budget is spent gets a 429 for a prefix with recent failures (a clean prefix — a
   * new key — is still verified); the rest is verified in the lane the two counts give.
   */
  function guardFor(key: string, network: string, attempt: { addressHit?: Hit }, report = false): VerificationGuard {
    // The configured JIM_INFRASTRUCTURE_API_KEY (a digest comparison, no argon2) skips the budgets:
    // knowing its prefix must not be enough to lock the administrator out.
    const exempt = services.auth.isInfrastructureSecret(key);
    return {
      refusesUnread: (prefix) => !exempt && !report && limits!.isLocked(prefix),
      async reserve(prefix) {
        if (exempt) return { lane: 'clean', settle() {} };
        const r = await limits!.reserve(prefix, network);
        attempt.addressHit = r.network;
        // A leaked-key report is counted like an attempt, but a spent budget only sends it to the suspect lane.
        if (report) {
          const clean = r.prefix.count === 1 && r.networkFailures === 0;
          return { lane: clean ? 'clean' : 'prefix', settle: (matched) => limits!.settle(prefix, network, r, matched ? 'matched' : 'failed') };
        }
        if (r.prefix.count > max!.prefix) {
          limits!.lock(prefix, r.prefix.resetMs);
          metrics.rateLimited('prefix');
          await limits!.settle(prefix, network, r, 'failed');
          throw refusedUnverified(prefix);
        }
        // A network's lane is judged by its failures only (a NAT's many first uses after a restart
        // are no sign of anything); a prefix also by other secrets for it under way (one key has
        // one secret, and a burst of guesses must not all pass before the first one fails).
        const prefixClean = r.prefix.count === 1;
        if (r.network.count > max!.ip && !prefixClean) {
          metrics.rateLimited('ip');
          await limits!.settle(prefix, network, r, 'refusedByNetwork'); // the prefix's budget is not spent by it
          const err = rateLimited(max!.ip, r.network, NO_VALID_KEY);
          err.matchedPrefix = prefix;
          err.fromFailureBudget = true;
          throw err;
        }
        return {
          lane: prefixClean ? (r.networkFailures === 0 ? 'clean' : 'address') : 'prefix',
          settle(matched) {
            if (matched) attempt.addressHit = undefined; // taken back: a refusal without argon2 is counted as the network's failure afresh
            return limits!.settle(prefix, network, r, matched ? 'matched' : 'failed');
          },
        };
      },
    };
  }

  /** After a failed authentication: the security event, and the network's budget (a 401 may become its 429). */
  async function failed(ip: string, reply: FastifyReply | null, err: unknown, network: string, attempt: { addressHit?: Hit }, verifiedSpendsBudget = true): Promise<never> {
    if (err instanceof AddressRefusedError) {
      services.securityEvents.record(err.matchedPrefix, ip, 'IP_NOT_ALLOWED'); // its secret verified: no guess, no budget spent
    } else if (err instanceof AuthError) {
      services.securityEvents.record(err.matchedPrefix, ip, err.eventReason ?? err.code);
      if (limits && (verifiedSpendsBudget || !(err instanceof RefusedKeyError))) {
        const hit = attempt.addressHit ?? (await limits.addressFailure(network));
        if (hit.count > max!.ip) {
          metrics.rateLimited('ip');
          const limited = rateLimited(max!.ip, hit, NO_VALID_KEY);
          limited.fromFailureBudget = true;
          throw limited;
        }
        reply?.headers(budgetHeaders(max!.ip, hit));
      }
    } else if (err instanceof RateLimitedError && err.fromFailureBudget) {
      services.securityEvents.record(err.matchedPrefix, ip, 'RATE_LIMITED'); // refused before its key was checked
    }
    throw err;
  }

  /** Everything but the synchronous cache hit: verification, failure budgets, events, the key's own limit. */
  async function authenticateFully(req: FastifyRequest, reply: FastifyReply, key: string, permission: Permission | undefined, ownBudget: boolean): Promise<Principal> {
    const ip = req.ip; // derived from X-Forwarded-For on every read when a proxy is trusted
    const network = clientNetwork(ip);
    const attempt: { addressHit?: Hit } = {};
    let principal: Principal;
    try {
      principal = await services.auth.authenticate(key, ip, limits ? guardFor(key, network, attempt) : undefined);
    } catch (err) {
      return failed(ip, reply, err, network, attempt);
    }
    req.principal = principal;
    // Only the key's own budget applies to a key that verified; the infrastructure key is exempt.
    // Only a caller that may verify is spared its own budget on the verify route (it spends the presented key's).
    if (limits && (ownBudget || !grants(principal.permissions, 'apikeys.verify')) && counted(principal)) {
      spendKeyBudget(reply, await limits.keyUse(principal.id, principal.rateLimit), principal);
    }
    requirePermission(principal, permission);
    return principal;
  }

  /** The delay a failure waits for (0: answer now). */
  const failureWait = (reply: FastifyReply, keyPresented: boolean, err: Error) =>
    opts.failureDelayMs > 0 && isDelayedFailure(err, keyPresented) ? opts.failureDelayMs - reply.elapsedTime : 0;

  const verifyPresented: RequestAuthenticator['verifyPresented'] = async (key, ip, reply, allowlistIp) => {
    const attempt: { addressHit?: Hit } = {};
    let principal: Principal | undefined;
    let network: string | undefined;
    try {
      try {
        principal = services.auth.fromCache(key, ip, undefined, allowlistIp);
        if (!principal) {
          network = clientNetwork(ip);
          principal = await services.auth.authenticate(key, ip, limits ? guardFor(key, network, attempt) : undefined, allowlistIp);
        }
      } catch (err) {
        network ??= clientNetwork(ip);
        // A disabled or expired key is no guess (its secret verified): a gateway refusing its
        // revoked clients must not spend their address's failure budget, which bounds guessing.
        await failed(ip, null, err, network, attempt, false);
      }
      if (limits && counted(principal!)) {
        const hit = await limits.keyUse(principal!.id, principal!.rateLimit);
        const limit = keyLimit(principal!);
        if (hit.count > limit) {
          metrics.rateLimited('key');
          throw rateLimited(limit, hit, 'requests for this API key');
        }
      }
      return { principal };
    } catch (err) {
      if (err instanceof AddressRefusedError) return { refusal: err, principal: err.principal };
      if (!(err instanceof AuthError || err instanceof RateLimitedError)) throw err; // 503 and the like: the caller's answer
      // A disabled or expired key's secret verified: the verdict names it, so its timing hides
      // nothing, and a gateway's refusal of a just-revoked key should not wait for the delay.
      const wait = err instanceof RefusedKeyError ? 0 : failureWait(reply, true, err);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, Math.ceil(wait)));
      return { refusal: err, principal: principal ?? (err instanceof RefusedKeyError ? err.principal : undefined) };
    }
  };

  /**
   * Ends the check. A failure is answered no sooner than failureDelayMs after the request
   * arrived: a flood of guesses holds its connections instead of the CPU, and a refusal without
   * argon2 takes as long as one with it. (One function for every request: closures made per
   * request cost more than the rest of a cache hit.)
   */
  function finish(reply: FastifyReply, next: (err?: Error) => void, keyPresented: boolean, err?: Error) {
    if (metrics.registry !== null) metrics.authOutcome(err ? (err instanceof AppError ? err.code : 'ERROR') : 'OK');
    if (err === undefined) {
      const principal = reply.request.principal;
      if (principal !== null) usage.count(principal.id, OUTCOME_INDEX.VALID);
    } else if (keyPresented) {
      const use = refusedUse(reply.request.principal, err);
      if (use !== null) usage.count(use[0], use[1]);
    }
    const wait = err ? failureWait(reply, keyPresented, err) : 0;
    // Whole milliseconds: Node keeps one timer list per distinct duration.
    if (wait > 0) setTimeout(next, Math.ceil(wait), err);
    else next(err);
  }

  const check: RequestAuthenticator['check'] = (req, reply, permission, next, ownBudget = true) => {
    let key: string | null = null;
    try {
      key = presentedKey(req.headers, req.raw.rawHeaders);
      if (key === null) throw new AuthError('UNAUTHENTICATED');
      const socket = req.raw.socket as unknown as Remembering;
      const cached = services.auth.fromCache(key, () => req.ip, (k) => digestFor(socket, k));
      metrics.cacheLookup(cached !== undefined);
      if (cached) {
        // A fresh cache hit (nearly every request): synchronous unless the key's budget is in Redis.
        req.principal = cached;
        if (limits && (ownBudget || !grants(cached.permissions, 'apikeys.verify')) && counted(cached)) {
          const use = limits.keyUse(cached.id, cached.rateLimit);
          if (use instanceof Promise) {
            use
              .then((hit) => {
                spendKeyBudget(reply, hit, cached);
                requirePermission(cached, permission);
              })
              .then(
                () => finish(reply, next, true),
                (err) => finish(reply, next, true, err),
              );
            return;
          }
          spendKeyBudget(reply, use, cached);
        }
        requirePermission(cached, permission);
        return finish(reply, next, true);
      }
    } catch (err) {
      if (err instanceof AddressRefusedError) services.securityEvents.record(err.matchedPrefix, req.ip, 'IP_NOT_ALLOWED');
      if (!(err instanceof AuthError)) return finish(reply, next, true, err as Error); // 403, or the key's own 429
      const ip = req.ip;
      failed(ip, reply, err, clientNetwork(ip), {}).catch((e) => finish(reply, next, key !== null, e));
      return;
    }
    authenticateFully(req, reply, key, permission, ownBudget).then(
      () => finish(reply, next, true),
      (err) => finish(reply, next, true, err),
    );
  };

  async function identifyReported(key: string, ip: string) {
    const network = clientNetwork(ip);
    const attempt: { addressHit?: Hit } = {};
    // A wrong secret for a real prefix is a failure in the network's budget, as in authentication
    // (its reservation counts it); an unknown prefix costs one indexed read, bounded by the
    // reports' own budget.
    return services.auth.identify(key, limits ? guardFor(key, network, attempt, true) : undefined);
  }

  app.decorateRequest('principal', null);
  app.decorate('requestAuth', {
    check,
    verifyPresented,
    identifyReported,
    authenticate: (req, reply, permission) =>
      new Promise<Principal>((resolve, reject) => check(req, reply, permission, (err) => (err ? reject(err) : resolve(req.principal!)))),
  } satisfies RequestAuthenticator);
}

export default fp(requestAuthPlugin, { name: 'request-auth', fastify: '5.x', dependencies: ['services', 'keyward-rate-limit', 'metrics'] });
