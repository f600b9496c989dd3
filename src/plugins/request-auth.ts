// Request authentication as one unit: which key a request carries, whether it verifies, the
// failure budgets (per address, and per key prefix before argon2), the per-key rate limit,
// security events and the auth-outcome metric — everything between a request and its
// principal. Routes declare `authorize(permission)` (plugins/auth.ts), which calls this; code
// that is not a hook calls `authenticate`. What it keeps (the verifications in flight per
// prefix) belongs to the app that registered it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { presentedKey } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';
import type { Principal } from '../auth/principal.js';
import { AppError, AuthError, RateLimitedError } from '../lib/errors.js';
import { enforce } from './rate-limit.js';

export interface RequestAuthenticator {
  /**
   * The check behind `authorize`: sets `req.principal` and calls `done()`, or `done(err)`.
   * A fresh cache hit with no rate limits configured completes synchronously.
   */
  check(req: FastifyRequest, reply: FastifyReply, permission: Permission | undefined, done: (err?: Error) => void): void;
  /** The same, as a promise: the principal, or the error the request is refused with. */
  authenticate(req: FastifyRequest, reply: FastifyReply, permission?: Permission): Promise<Principal>;
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

function requirePermission(principal: Principal, permission?: Permission) {
  if (permission && !principal.permissions.has(permission)) {
    throw new AppError('FORBIDDEN', `This requires the ${permission} permission, which your key does not have.`);
  }
}

async function requestAuthPlugin(app: FastifyInstance) {
  const { services, metrics } = app;
  const rateLimits = app.rateLimits;
  /** argon2 verifications in progress per presented key prefix (bounded by the verification queue). */
  const verifying = new Map<string, number>();

  /**
   * Just before argon2, for a key whose prefix matches a stored key: refuse when that prefix's
   * budget of wrong secrets, less the verifications already under way for it, is spent, so a
   * burst of concurrent guesses cannot all reach argon2 before the first failure is counted.
   * The reservation is taken before the first await, so concurrent requests see each other's.
   * The client's address plays no part: a key that verifies is never refused for its
   * neighbours' failures. The returned release counts a wrong secret against the prefix, then
   * frees the slot. The configured JIM_INFRASTRUCTURE_API_KEY itself (compared as a digest, no
   * argon2) skips the budget, so knowing its prefix is not enough to lock the administrator out.
   */
  async function reserveVerification(req: FastifyRequest, reply: FastifyReply, key: string, prefix: string) {
    if (services.auth.isInfrastructureSecret(key)) return async () => {};
    const inFlight = verifying.get(prefix) ?? 0;
    verifying.set(prefix, inFlight + 1);
    const free = () => {
      const n = (verifying.get(prefix) ?? 1) - 1;
      if (n > 0) verifying.set(prefix, n);
      else verifying.delete(prefix);
    };
    try {
      await enforce(rateLimits!.prefix, req, reply, `wrong secrets for keys starting ${prefix}`, { increment: false, reserved: inFlight });
    } catch (err) {
      free();
      if (err instanceof RateLimitedError) err.matchedPrefix = prefix;
      throw err;
    }
    return async (matched: boolean) => {
      try {
        if (!matched) await rateLimits!.prefix(req, { increment: true });
      } finally {
        free();
      }
    };
  }

  /** Everything but the synchronous cache hit: verification, failure budgets, events, the key's own limit. */
  async function authenticateFully(
    req: FastifyRequest,
    reply: FastifyReply,
    early: Error | undefined,
    key: string | null,
    cached: Principal | undefined,
    permission?: Permission,
  ): Promise<Principal> {
    let principal: Principal;
    try {
      if (early) throw early;
      if (key === null) throw new AuthError('UNAUTHENTICATED');
      principal = cached ?? (await services.auth.authenticate(key, req.ip, rateLimits ? (prefix) => reserveVerification(req, reply, key, prefix) : undefined));
    } catch (err) {
      if (err instanceof AuthError) {
        services.securityEvents.record(err.matchedPrefix, req.ip, err.code);
        if (rateLimits) await enforce(rateLimits.ip, req, reply, NO_VALID_KEY); // counts the failure; may turn it into a 429
      } else if (err instanceof RateLimitedError) {
        services.securityEvents.record(err.matchedPrefix, req.ip, 'RATE_LIMITED'); // refused before its key was checked
      }
      throw err;
    }
    req.principal = principal;
    // Only the key's own budget applies to a key that verified; the infrastructure key is exempt.
    if (rateLimits && !principal.isInfrastructureKey) await enforce(rateLimits.key, req, reply, 'requests for this API key');
    requirePermission(principal, permission);
    return principal;
  }

  const check: RequestAuthenticator['check'] = (req, reply, permission, next) => {
    // With metrics off (the default) the hot path gets `next` itself, no wrapper per request.
    const done =
      metrics.registry === null
        ? next
        : (err?: Error) => {
            metrics.authOutcome(err ? (err instanceof AppError ? err.code : 'ERROR') : 'OK');
            next(err);
          };
    let key: string | null = null;
    let cached: Principal | undefined;
    let early: Error | undefined;
    try {
      key = presentedKey(req.headers, req.raw.rawHeaders);
      if (key === null) throw new AuthError('UNAUTHENTICATED');
      cached = services.auth.fromCache(key, req.ip);
      metrics.cacheLookup(cached !== undefined);
      // No rate limits configured and a fresh cache hit (nearly every request): done synchronously.
      if (cached && !rateLimits) {
        req.principal = cached;
        requirePermission(cached, permission);
        return done();
      }
    } catch (err) {
      if (!rateLimits) {
        if (err instanceof AuthError) services.securityEvents.record(err.matchedPrefix, req.ip, err.code);
        return done(err as Error);
      }
      early = err as Error;
    }
    authenticateFully(req, reply, early, key, cached, permission).then(() => done(), done);
  };

  app.decorateRequest('principal', null);
  app.decorate('requestAuth', {
    check,
    authenticate: (req, reply, permission) =>
      new Promise<Principal>((resolve, reject) => check(req, reply, permission, (err) => (err ? reject(err) : resolve(req.principal!)))),
  } satisfies RequestAuthenticator);
}

export default fp(requestAuthPlugin, { name: 'request-auth', fastify: '5.x', dependencies: ['services', 'keyward-rate-limit', 'metrics'] });
