// Authentication, rate limits and permission checks, as an onRequest hook routes opt into. It
// runs before body validation, so a caller without a valid key learns nothing about the input.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthError, presentedKey, type Principal } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';
import { ForbiddenError } from '../services/api-keys.js';
import { enforce } from './rate-limit.js';

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
  return (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    const { limits, services } = req.server;
    let key: string | null = null;
    let cached: Principal | undefined;
    try {
      key = presentedKey(req.headers);
      if (key === null) throw new AuthError('UNAUTHENTICATED');
      cached = services.auth.fromCache(key, req.ip);
      // No limits configured and a fresh cache hit (nearly every request): done synchronously.
      if (cached && !limits) {
        req.principal = cached;
        permit(cached, permission);
        return done();
      }
    } catch (err) {
      if (!(err instanceof AuthError) || !limits) {
        if (err instanceof AuthError) services.securityEvents.record(err.matchedPrefix, req.ip, err.code);
        return done(err as Error);
      }
    }
    slowPath(req, reply, key, cached, permission).then(() => done(), done);
  };
}

async function slowPath(req: FastifyRequest, reply: FastifyReply, key: string | null, cached: Principal | undefined, permission?: Permission) {
  const { limits, services } = req.server;
  let principal: Principal;
  try {
    if (key === null) throw new AuthError('UNAUTHENTICATED');
    if (cached) {
      principal = cached;
    } else {
      // The failed-request budget is checked before any argon2 work.
      if (limits) await enforce(limits.ip, req, reply, NO_VALID_KEY, false);
      principal = cached ?? (await services.auth.authenticate(key, req.ip));
    }
  } catch (err) {
    if (err instanceof AuthError) {
      services.securityEvents.record(err.matchedPrefix, req.ip, err.code);
      if (limits) await enforce(limits.ip, req, reply, NO_VALID_KEY); // may turn the 401 into a 429
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
