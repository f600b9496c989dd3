// Roles managed through the API. Built-in roles (ids below 100) are fixed. Every change runs in
// one transaction with its history row; a change to what a role grants (its permissions, or its
// name, which keys show) bumps the version of every key holding it and notifies every instance,
// so cached keys follow on their next request. The escalation guard applies as for keys: a
// caller grants only what it holds, and cannot widen a role held by keys that outlive its own.
import type { KeyEventOp } from '../db/key-events.js';
import { encodeKeyEvent, KEY_CHANNEL } from '../db/key-events.js';
import { nextChangeSeq } from '../db/peer-acks.js';
import { covers, effectivePermissions, listPermissions } from '../auth/permissions.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import { AppError } from '../lib/errors.js';
import type { CreateRoleInput, PatchRoleInput, RoleView } from '../schemas/roles.js';
import { markOwnWrite, type Tx } from '../store/api-keys.js';
import { createRoleStore, isNameConflict, type RoleWrite, type StoredRole } from '../store/roles.js';
import { requireCovered, type Actor } from './escalation-guard.js';
import { matchesIfMatch } from './etag.js';
import { pageOf } from './paging.js';

export const roleEtag = (role: { version: number }) => `"${role.version}"`;

export function toRoleView(role: StoredRole): RoleView {
  return {
    id: role.id,
    name: role.name,
    description: role.description,
    builtIn: role.builtIn,
    permissions: listPermissions(effectivePermissions([role.permissions])),
    createdAt: role.createdAt.toISOString(),
    updatedAt: role.updatedAt.toISOString(),
  };
}

const snapshotOf = (role: RoleWrite) => ({ name: role.name, description: role.description, permissions: role.permissions });

export function createRoleService(deps: {
  prisma: PrismaClient;
  instanceId: string;
  /** Called after a role change commits, for each key whose permissions it changed (local cache, event stream). */
  onKeyChanged?: (keyId: string, op: KeyEventOp, seq?: number) => Promise<void> | void;
  cursorKey: () => Promise<Buffer>;
  now?: () => Date;
}) {
  const { prisma, instanceId } = deps;
  const store = createRoleStore(prisma);
  const now = deps.now ?? (() => new Date());

  async function locked(tx: Tx, id: number, ifMatch: string | undefined, mode: 'update' | 'delete'): Promise<StoredRole> {
    const role = await store.lock(tx, id, mode);
    if (!role) throw new AppError('ROLE_NOT_FOUND', `There is no role ${id} (GET /api/v1/roles lists them).`);
    if (role.builtIn) throw new AppError('ROLE_BUILT_IN', `${role.name} is a built-in role: it cannot be changed or deleted. Create a role of your own instead.`);
    if (!matchesIfMatch(ifMatch, roleEtag(role))) throw new AppError('PRECONDITION_FAILED', 'The role has changed since the ETag you sent.');
    return role;
  }

  async function requireUniqueName(tx: Tx, name: string, except?: number) {
    const other = await store.named(tx, name, except);
    if (other) throw nameTaken(other);
  }
  const nameTaken = (other: { id: number; name: string }) =>
    new AppError('ROLE_NAME_TAKEN', `A role named "${other.name}" already exists (id ${other.id}); role names are unique, whatever their case.`);

  /** Runs a change; a concurrent create or rename to the same name surfaces as the unique index's violation. */
  async function write<T>(fn: (tx: Tx, naming: (name: string) => void) => Promise<T>): Promise<T> {
    let name = '';
    try {
      return await prisma.$transaction(async (tx) => {
        await markOwnWrite(tx);
        return fn(tx, (n) => (name = n));
      });
    } catch (err) {
      if (isNameConflict(err)) throw new AppError('ROLE_NAME_TAKEN', `A role named "${name}" already exists; role names are unique, whatever their case.`);
      throw err;
    }
  }

  const history = (tx: Tx, roleId: number, operation: string, actor: Actor, reason: string | null | undefined, role: RoleWrite, at: Date) =>
    store.writeHistory(tx, roleId, { operation, actorType: actor.type, actorId: actor.id, actorName: actor.name, changeReason: reason ?? null, snapshot: snapshotOf(role), at });

  async function applyUpdate(actor: Actor, id: number, ifMatch: string | undefined, next: (current: StoredRole) => RoleWrite, reason: string | null | undefined) {
    const { role, keyIds, seqs } = await write(async (tx, naming) => {
      const current = await locked(tx, id, ifMatch, 'update');
      const currentPerms = effectivePermissions([current.permissions]);
      requireCovered(actor, currentPerms, 'change this role');
      const target = next(current);
      naming(target.name);
      const targetPerms = effectivePermissions([target.permissions]);
      requireCovered(actor, targetPerms, 'give this role those permissions');
      // A change to what the role grants changes every key holding it: the caller must be one
      // who could change those keys directly (their permissions, from all their roles, within its own).
      const grantsChange = JSON.stringify([...currentPerms].sort()) !== JSON.stringify([...targetPerms].sort());
      if (grantsChange) requireCovered(actor, effectivePermissions(await store.holdersPermissions(tx, id)), 'change a role held by keys with more permissions than yours');
      // Widening a role widens every key holding it: those keys must not outlive the caller's own.
      if (actor.expiresAt && !actor.permissions.has('*') && !covers(currentPerms, targetPerms) && (await store.heldBeyond(tx, id, actor.expiresAt))) {
        throw new AppError(
          'FORBIDDEN',
          `Your key expires at ${actor.expiresAt.toISOString()}: it cannot give more permissions to a role held by keys that expire later (or never).`,
        );
      }
      if (target.name !== current.name) await requireUniqueName(tx, target.name, id);
      const at = now();
      if (grantsChange || target.name !== current.name) await store.lockHolders(tx, id);
      const role = await store.update(tx, id, { ...target, version: current.version + 1, at });
      const seqs = new Map<string, number>();
      const event = (keyId: string) => {
        const seq = nextChangeSeq();
        seqs.set(keyId, seq);
        return encodeKeyEvent({ instanceId, op: 'update', keyId, seq });
      };
      const keyIds = grantsChange || target.name !== current.name ? await store.bumpHolders(tx, id, event, KEY_CHANNEL) : [];
      await history(tx, id, 'update', actor, reason, target, at);
      return { role, keyIds, seqs };
    });
    await Promise.all(keyIds.map((keyId) => deps.onKeyChanged?.(keyId, 'update', seqs.get(keyId))));
    return { role: toRoleView(role), etag: roleEtag(role) };
  }

  return {
    async list(): Promise<RoleView[]> {
      return (await store.list()).map(toRoleView);
    },

    async get(id: number) {
      const role = await store.find(id);
      if (!role) throw new AppError('ROLE_NOT_FOUND', `There is no role ${id} (GET /api/v1/roles lists them).`);
      return { role: toRoleView(role), etag: roleEtag(role) };
    },

    async create(actor: Actor, input: CreateRoleInput) {
      const target: RoleWrite = { name: input.name, description: input.description ?? null, permissions: input.permissions };
      requireCovered(actor, effectivePermissions([target.permissions]), 'create a role with those permissions');
      const role = await write(async (tx, naming) => {
        naming(input.name);
        await requireUniqueName(tx, input.name);
        const at = now();
        const role = await store.insert(tx, { ...target, at });
        await history(tx, role.id, 'create', actor, input.changeReason, target, at);
        return role;
      });
      return { role: toRoleView(role), etag: roleEtag(role) };
    },

    replace: (actor: Actor, id: number, input: CreateRoleInput, ifMatch?: string) =>
      applyUpdate(actor, id, ifMatch, () => ({ name: input.name, description: input.description ?? null, permissions: input.permissions }), input.changeReason),

    patch: (actor: Actor, id: number, input: PatchRoleInput, ifMatch?: string) =>
      applyUpdate(
        actor,
        id,
        ifMatch,
        (current) => ({
          name: input.name ?? current.name,
          description: input.description !== undefined ? input.description : current.description,
          permissions: input.permissions ?? current.permissions,
        }),
        input.changeReason,
      ),

    /** Deletes a role no key holds; returns what it was. */
    async remove(actor: Actor, id: number, reason: string | undefined, ifMatch?: string): Promise<RoleView> {
      const role = await write(async (tx) => {
        const current = await locked(tx, id, ifMatch, 'delete');
        requireCovered(actor, effectivePermissions([current.permissions]), 'delete this role');
        const holders = await store.holders(tx, id);
        if (holders > 0) {
          throw new AppError('ROLE_IN_USE', `${holders} ${holders === 1 ? 'key holds' : 'keys hold'} this role: remove it from ${holders === 1 ? 'that key' : 'them'} first (PATCH their roleIds).`);
        }
        await store.delete(tx, id);
        await history(tx, id, 'delete', actor, reason, current, now());
        return current;
      });
      return toRoleView(role);
    },

    /** Newest first; readable after the role is deleted. Paged as the key history is. */
    async history(id: number, opts: { limit?: number; cursor?: string }) {
      const { items, next, started } = await pageOf('roleHistory', opts, {
        signingKey: deps.cursorKey,
        fetch: (after, take) => store.history(id, after ? after[1] : null, take),
        positionOf: (row) => [id, row.version],
        accept: (position) => position[0] === id,
      });
      if (!items.length && started && !(await store.find(id))) throw new AppError('ROLE_NOT_FOUND', `Role ${id} has no change history.`);
      return {
        items: items.map((r) => ({
          version: r.version,
          operation: r.operation as 'create' | 'update' | 'delete',
          changedAt: r.changedAt.toISOString(),
          actor: { type: r.actorType as 'apiKey' | 'system', id: r.actorId, name: r.actorName },
          changeReason: r.changeReason,
          snapshot: r.snapshot as { name: string; description: string | null; permissions: string[] },
        })),
        next,
      };
    },
  };
}

export type RoleService = ReturnType<typeof createRoleService>;
