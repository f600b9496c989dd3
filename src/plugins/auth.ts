// Authentication and permission checks, as an onRequest hook routes opt into. It runs before
// body validation, so a caller without a valid key learns nothing about the route's input.
import type { FastifyRequest } from 'fastify';
import { AuthError, presentedKey, type Principal } from '../auth/authenticator.js';
import type { Permission } from '../auth/permissions.js';
import { ForbiddenError } from '../services/api-keys.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** onRequest hook: any valid key, or one holding `permission`. */
export function authorize(permission?: Permission) {
  return async (req: FastifyRequest) => {
    const key = presentedKey(req.headers);
    if (key === null) throw new AuthError('UNAUTHENTICATED');
    const principal = await req.server.services.auth.authenticate(key, req.ip);
    req.principal = principal;
    if (permission && !principal.permissions.has(permission)) {
      throw new ForbiddenError(`This requires the ${permission} permission, which your key does not have.`);
    }
  };
}

/** The authenticated caller; only for routes behind `authorize`. */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new AuthError('UNAUTHENTICATED');
  return req.principal;
}

export const SECURITY: Array<Record<string, string[]>> = [{ ApiKeyHeader: [] }, { BearerAuth: [] }];
