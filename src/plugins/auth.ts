// What routes declare: `authorize(permission)` as their onRequest hook (any valid key, or one
// holding `permission`). It runs before body validation, so a caller without a valid key learns
// nothing about the input. The work is request-auth.ts's.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Permission } from '../auth/permissions.js';
import type { Principal } from '../auth/principal.js';
import { AuthError } from '../lib/errors.js';
import type { Actor } from '../services/escalation-guard.js';

/** Marks the hooks `authorize` makes, with what they require ("any key" or a permission), so tests can see which routes are protected. */
export const AUTHORIZES = Symbol('authorizes');

/**
 * onRequest hook: any valid key, or one holding `permission`. `ownBudget: false` spends no
 * request from the caller's own per-key budget (the verify endpoint spends the presented key's).
 */
export function authorize(permission?: Permission, opts: { ownBudget?: boolean } = {}) {
  const ownBudget = opts.ownBudget ?? true;
  const hook = (req: FastifyRequest, reply: FastifyReply, next: (err?: Error) => void) => req.server.requestAuth.check(req, reply, permission, next, ownBudget);
  return Object.assign(hook, { [AUTHORIZES]: permission ?? 'any key' });
}

/** The caller as the escalation guard sees it. */
export function actorOf(req: FastifyRequest): Actor {
  const p = principalOf(req);
  return {
    type: 'apiKey',
    id: p.id,
    name: p.name,
    permissions: p.permissions,
    expiresAt: p.expiresAt === null ? null : new Date(p.expiresAt),
    replacedSecret: p.secretExpiresAt !== null,
  };
}

/** The authenticated caller; only for routes behind `authorize`. */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new AuthError('UNAUTHENTICATED');
  return req.principal;
}

export const SECURITY: Array<Record<string, string[]>> = [{ ApiKeyHeader: [] }, { BearerAuth: [] }];
