// Authentication and permission checks, as an onRequest hook routes opt into. It runs before
// body validation, so a caller without a valid key learns nothing about the route's input.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthError, presentedKey, type Principal } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';
import { ForbiddenError } from '../services/api-keys.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/**
 * onRequest hook: any valid key, or one holding `permission`. Callback style so that a cache
 * hit (nearly every request) completes synchronously, without a promise round.
 */
export function authorize(permission?: Permission) {
  return (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    const finish = (principal: Principal) => {
      req.principal = principal;
      if (permission && !principal.permissions.has(permission)) {
        return done(new ForbiddenError(`This requires the ${permission} permission, which your key does not have.`));
      }
      done();
    };
    let key: string | null;
    let cached: Principal | undefined;
    const auth = req.server.services.auth;
    try {
      key = presentedKey(req.headers);
      if (key === null) throw new AuthError('UNAUTHENTICATED');
      cached = auth.fromCache(key, req.ip);
    } catch (err) {
      return done(err as Error);
    }
    if (cached) return finish(cached);
    auth.authenticate(key, req.ip).then(finish, done);
  };
}

/** The authenticated caller; only for routes behind `authorize`. */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new AuthError('UNAUTHENTICATED');
  return req.principal;
}

export const SECURITY: Array<Record<string, string[]>> = [{ ApiKeyHeader: [] }, { BearerAuth: [] }];
