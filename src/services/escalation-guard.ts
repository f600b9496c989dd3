// The escalation guard: who may do what to a key. A caller may only touch keys whose
// permissions are within its own, and, unless it holds "*", what it does stays contained:
// - permissions: the key's current and resulting permissions must both be within the caller's;
// - expiry: a caller whose own key expires cannot give any key (itself included) an expiry
//   later than its own, nor none at all; shortening an expiry, or leaving it as it is, is fine,
//   unless the same change gives the key more (a permission, or being enabled again): then its
//   expiry must be within the caller's whatever it was;
// - enabling: a key disabled by a caller whose permissions this one does not hold (or by
//   someone unknown, e.g. before this rule existed) can only be enabled again by such a caller.
import { ALL, covers, listPermissions, missing } from '../auth/permissions.js';
import { AppError } from '../lib/errors.js';

export interface Actor {
  type: 'apiKey' | 'system' | 'revocationReport';
  id: string | null;
  name: string | null;
  /** Effective permissions ("*" included when held); the guard compares against them. */
  permissions: Set<string>;
  /** When the caller's own key expires, if it does: what it creates or changes stays within it. */
  expiresAt?: Date | null;
  /** The caller presented its key's replaced secret (a rotation's grace period): it may not rotate that key again. */
  replacedSecret?: boolean;
}

export const SYSTEM_ACTOR: Actor = { type: 'system', id: null, name: 'system', permissions: new Set([ALL]), expiresAt: null };

const missingFrom = (actor: Actor, needed: Set<string>) => missing(actor.permissions, needed).map((p) => (p === ALL ? '* (every permission)' : p));

/** The key's permissions (current or resulting) must be within the caller's. */
export function requireCovered(actor: Actor, needed: Set<string>, what: string) {
  if (!covers(actor.permissions, needed)) {
    throw new AppError('FORBIDDEN', `You cannot ${what}: that needs permissions your key does not have: ${missingFrom(actor, needed).join(', ')}.`);
  }
}

/** The expiry a key ends up with stays within the caller's own. `current` is undefined for a new key. */
export function requireExpiryWithin(actor: Actor, current: Date | null | undefined, next: Date | null, widens = false) {
  if (actor.permissions.has(ALL) || !actor.expiresAt) return;
  const ms = (d: Date | null | undefined) => (d ? d.getTime() : null);
  if (!widens) {
    if (current !== undefined && ms(current) === ms(next)) return;
    // Giving an existing key a nearer end than it had (never counts as the farthest) contains it further.
    const shortened = next !== null && current !== undefined && (current === null || next.getTime() <= current.getTime());
    if (next !== null && shortened) return;
  }
  if (next !== null && next.getTime() <= actor.expiresAt.getTime()) return;
  const own = actor.expiresAt.toISOString();
  throw new AppError(
    'FORBIDDEN',
    widens
      ? `Your key expires at ${own}: a key it gives more permissions to, or enables, must expire by then too. Set expiresAt to ${own} or earlier in the same request.`
      : `Your key expires at ${own}: it cannot give a key ${next === null ? 'no expiry' : 'a later expiry'}. Set expiresAt to ${own} or earlier.`,
  );
}

/** A disabled key is enabled again only by a caller holding what its disabler held. */
export function requireMayEnable(actor: Actor, current: { isEnabled: boolean; disabledBy: string[] }, nextEnabled: boolean) {
  if (current.isEnabled || !nextEnabled) return;
  const needed = new Set(current.disabledBy.length ? current.disabledBy : [ALL]);
  if (!covers(actor.permissions, needed)) {
    throw new AppError(
      'FORBIDDEN',
      `This key was disabled by a caller with permissions your key does not have (${missingFrom(actor, needed).join(', ')}); only such a caller can enable it again.`,
    );
  }
}

/** What a key records as its disabler: the caller's permissions when it goes (or is made) disabled. */
export const disabledByAfter = (actor: Actor, wasEnabled: boolean, previous: string[], enabled: boolean) =>
  enabled ? [] : wasEnabled ? listPermissions(actor.permissions) : previous;
