// Authentication, rate limits and permission checks, as an onRequest hook routes opt into. It
// runs before body validation, so a caller without a valid key learns nothing about the input.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthError, presentedKey, type Principal } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';
import { clientNetwork } from '../lib/client-ip.js';
import { AppError } from '../lib/errors.js';
import { ForbiddenError } from '../services/api-keys.js';
import { enforce, RateLimitedError } from './rate-limit.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

const NO_VALID_KEY = 'without a valid API key from this address';

function permit(principal: Principal, permission?: Permission) {
  if (permission && !principal.permissions.has(permission)) {
    throw new ForbiddenError(`This requires the ${permission} permission, which your key does not have.`);
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
      key = presentedKey(req.headers);
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

/** argon2 verifications in progress per client network, per app instance (bounded by the argon2 limiter). */
const inFlightByApp = new WeakMap<object, Map<string, number>>();

/**
 * Just before argon2: refuse when the address's failure budget, less the verifications it
 * already has in flight, is spent — so a burst of concurrent wrong secrets cannot all reach
 * argon2 before the first failure is counted.
 */
async function reserveVerification(req: FastifyRequest, reply: FastifyReply): Promise<() => void> {
  const limits = req.server.limits!;
  let verifying = inFlightByApp.get(req.server);
  if (!verifying) inFlightByApp.set(req.server, (verifying = new Map()));
  const network = clientNetwork(req.ip);
  const inFlight = verifying.get(network) ?? 0;
  await enforce(limits.ip, req, reply, NO_VALID_KEY, { increment: false, reserved: inFlight });
  verifying.set(network, inFlight + 1);
  return () => {
    const n = (verifying!.get(network) ?? 1) - 1;
    if (n > 0) verifying!.set(network, n);
    else verifying!.delete(network);
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
    principal = cached ?? (await services.auth.authenticate(key, req.ip, limits ? () => reserveVerification(req, reply) : undefined));
  } catch (err) {
    if (err instanceof AuthError) {
      services.securityEvents.record(err.matchedPrefix, req.ip, err.code);
      if (limits) await enforce(limits.ip, req, reply, NO_VALID_KEY); // counts the failure; may turn it into a 429
    } else if (err instanceof RateLimitedError) {
      services.securityEvents.record(undefined, req.ip, 'RATE_LIMITED'); // refused before its key was checked
    }
    throw err;
  }
  req.principal = principal;
  // The infrastructure key is exempt once its secret has verified.
  if (limits && !principal.isInfrastructureKey) await enforce(limits.key, req, reply, 'for this API key');
  permit(principal, permission);
}

/** The authenticated caller; only for routes behind `authorize`. */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new AuthError('UNAUTHENTICATED');
  return req.principal;
}

export const SECURITY: Array<Record<string, string[]>> = [{ ApiKeyHeader: [] }, { BearerAuth: [] }];
