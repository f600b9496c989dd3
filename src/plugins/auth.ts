// Authentication, rate limits and permission checks, as an onRequest hook routes opt into. It
// runs before body validation, so a caller without a valid key learns nothing about the input.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthError, presentedKey, type Principal } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';
import { AppError } from '../lib/errors.js';
import { enforce, RateLimitedError } from './rate-limit.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

const NO_VALID_KEY = 'requests without a valid API key from this address';

function permit(principal: Principal, permission?: Permission) {
  if (permission && !principal.permissions.has(permission)) {
    throw new AppError('FORBIDDEN', `This requires the ${permission} permission, which your key does not have.`);
  }
}

/** onRequest hook: any valid key, or one holding `permission`. */
export function authorize(permission?: Permission) {
  return (req: FastifyRequest, reply: FastifyReply, next: (err?: Error) => void) => {
    const { limits, services, metrics } = req.server;
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
      // No limits configured and a fresh cache hit (nearly every request): done synchronously.
      if (cached && !limits) {
        req.principal = cached;
        permit(cached, permission);
        return done();
      }
    } catch (err) {
      if (!limits) {
        if (err instanceof AuthError) services.securityEvents.record(err.matchedPrefix, req.ip, err.code);
        return done(err as Error);
      }
      early = err as Error;
    }
    slowPath(req, reply, early, key, cached, permission).then(() => done(), done);
  };
}

/** argon2 verifications in progress per presented key prefix, per app instance (bounded by the argon2 limiter). */
const inFlightByApp = new WeakMap<object, Map<string, number>>();

/**
 * Just before argon2, for a key whose prefix matches a stored key: refuse when that prefix's
 * budget of wrong secrets, less the verifications already under way for it, is spent, so a burst
 * of concurrent guesses cannot all reach argon2 before the first failure is counted. The
 * reservation is taken before the first await, so concurrent requests see each other's. The
 * client's address plays no part: a key that verifies is never refused for its neighbours'
 * failures. The returned release counts a wrong secret against the prefix, then frees the slot.
 * The configured JIM_INFRASTRUCTURE_API_KEY itself (compared as a digest, no argon2) skips the
 * budget, so knowing its prefix is not enough to lock the administrator out.
 */
async function reserveVerification(req: FastifyRequest, reply: FastifyReply, key: string, prefix: string): Promise<(matched: boolean) => Promise<void>> {
  const { limits, services } = req.server;
  if (services.auth.isInfrastructureSecret(key)) return async () => {};
  let verifying = inFlightByApp.get(req.server);
  if (!verifying) inFlightByApp.set(req.server, (verifying = new Map()));
  const inFlight = verifying.get(prefix) ?? 0;
  verifying.set(prefix, inFlight + 1);
  const free = () => {
    const n = (verifying!.get(prefix) ?? 1) - 1;
    if (n > 0) verifying!.set(prefix, n);
    else verifying!.delete(prefix);
  };
  try {
    await enforce(limits!.prefix, req, reply, `wrong secrets for keys starting ${prefix}`, { increment: false, reserved: inFlight });
  } catch (err) {
    free();
    if (err instanceof RateLimitedError) err.matchedPrefix = prefix;
    throw err;
  }
  return async (matched) => {
    try {
      if (!matched) await limits!.prefix(req, { increment: true });
    } finally {
      free();
    }
  };
}

async function slowPath(
  req: FastifyRequest,
  reply: FastifyReply,
  early: Error | undefined,
  key: string | null,
  cached: Principal | undefined,
  permission?: Permission,
) {
  const { limits, services } = req.server;
  let principal: Principal;
  try {
    if (early) throw early;
    if (key === null) throw new AuthError('UNAUTHENTICATED');
    principal =
      cached ?? (await services.auth.authenticate(key, req.ip, limits ? (prefix) => reserveVerification(req, reply, key!, prefix) : undefined));
  } catch (err) {
    if (err instanceof AuthError) {
      services.securityEvents.record(err.matchedPrefix, req.ip, err.code);
      if (limits) await enforce(limits.ip, req, reply, NO_VALID_KEY); // counts the failure; may turn it into a 429
    } else if (err instanceof RateLimitedError) {
      services.securityEvents.record(err.matchedPrefix, req.ip, 'RATE_LIMITED'); // refused before its key was checked
    }
    throw err;
  }
  req.principal = principal;
  // Only the key's own budget applies to a key that verified; the infrastructure key is exempt.
  if (limits && !principal.isInfrastructureKey) await enforce(limits.key, req, reply, 'requests for this API key');
  permit(principal, permission);
}

/** The authenticated caller; only for routes behind `authorize`. */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new AuthError('UNAUTHENTICATED');
  return req.principal;
}

export const SECURITY: Array<Record<string, string[]>> = [{ ApiKeyHeader: [] }, { BearerAuth: [] }];
