// The roles' SQL: the roles table, its change history, and the two questions a role change
// asks of the keys (who holds it; bump their versions so every cache re-reads them).
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';
import type { Tx } from './api-keys.js';

type Db = PrismaClient | Tx;

export interface StoredRole {
  id: number;
  name: string;
  description: string | null;
  builtIn: boolean;
  permissions: string[];
  createdAt: Date;
  updatedAt: Date;
  version: number;
}

export interface RoleWrite {
  name: string;
  description: string | null;
  permissions: string[];
}

export interface RoleChangeRow {
  version: number;
  operation: string;
  changedAt: Date;
  actorType: string;
  actorId: string | null;
  actorName: string | null;
  changeReason: string | null;
  snapshot: unknown;
}

/** Whether an error is the unique violation of a role's name (either index), and no other. */
export const isNameConflict = (err: unknown) => {
  if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002') {
    const target = (err.meta as { target?: unknown } | undefined)?.target;
    if (Array.isArray(target) ? target.includes('name') : typeof target === 'string' && /name/.test(target)) return true;
  }
  return err instanceof Error && /roles_lower_name_key|roles_name_key/.test(err.message);
};

export function createRoleStore(prisma: PrismaClient) {
  return {
    list: (db: Db = prisma): Promise<StoredRole[]> => db.role.findMany({ orderBy: { id: 'asc' } }),

    find: (id: number, db: Db = prisma): Promise<StoredRole | null> => db.role.findUnique({ where: { id } }),

    /**
     * Locks the role's row for the rest of the transaction, then reads it. `update` (FOR NO KEY
     * UPDATE) lets key changes that assign the role go on — they hold their key's row and share
     * the role's, and this transaction then updates those keys' rows: the strong lock would make a
     * deadlock of that. `delete` (FOR UPDATE) makes them wait, so a delete sees every holder.
     */
    async lock(tx: Tx, id: number, mode: 'update' | 'delete'): Promise<StoredRole | null> {
      const locked =
        mode === 'delete'
          ? await tx.$queryRaw<Array<{ id: number }>>`SELECT id FROM roles WHERE id = ${id} FOR UPDATE`
          : await tx.$queryRaw<Array<{ id: number }>>`SELECT id FROM roles WHERE id = ${id} FOR NO KEY UPDATE`;
      return locked.length ? tx.role.findUniqueOrThrow({ where: { id } }) : null;
    },

    /**
     * Locks the rows of the keys holding the role, in id order, before the role's own row is
     * written: a key change holds its key's row and then shares the role's, so the role change
     * must not hold the role's (as a rename does) while it waits for a key.
     */
    async lockHolders(tx: Tx, id: number): Promise<void> {
      await tx.$queryRaw`SELECT id FROM api_keys WHERE id IN (SELECT api_key_id FROM api_key_roles WHERE role_id = ${id}) ORDER BY id FOR UPDATE`;
    },

    /** What the keys holding the role hold, from all their roles (a role change reaches each of them). */
    async holdersPermissions(tx: Tx, id: number): Promise<string[][]> {
      const rows = await tx.$queryRaw<Array<{ permissions: string[] }>>`
        SELECT DISTINCT r.permissions FROM api_key_roles kr
          JOIN api_key_roles other ON other.api_key_id = kr.api_key_id
          JOIN roles r ON r.id = other.role_id
         WHERE kr.role_id = ${id}`;
      return rows.map((r) => r.permissions);
    },

    /** Another role with this name, whatever its case. */
    async named(tx: Tx, name: string, except?: number): Promise<{ id: number; name: string } | null> {
      const rows = await tx.$queryRaw<Array<{ id: number; name: string }>>`
        SELECT id, name FROM roles WHERE lower(name) = lower(${name}) AND id <> ${except ?? 0} LIMIT 1`;
      return rows[0] ?? null;
    },

    insert: (tx: Tx, role: RoleWrite & { at: Date }): Promise<StoredRole> =>
      tx.role.create({ data: { name: role.name, description: role.description, permissions: role.permissions, builtIn: false, createdAt: role.at, updatedAt: role.at } }),

    update: (tx: Tx, id: number, role: RoleWrite & { version: number; at: Date }): Promise<StoredRole> =>
      tx.role.update({ where: { id }, data: { name: role.name, description: role.description, permissions: role.permissions, version: role.version, updatedAt: role.at } }),

    async delete(tx: Tx, id: number): Promise<void> {
      await tx.role.delete({ where: { id } });
    },

    /** How many keys hold the role. */
    holders: (tx: Tx, id: number): Promise<number> => tx.apiKeyRole.count({ where: { roleId: id } }),

    /** Whether a key holding the role lives past `at` (or forever). */
    async heldBeyond(tx: Tx, id: number, at: Date): Promise<boolean> {
      const rows = await tx.$queryRaw<Array<{ beyond: boolean }>>`
        SELECT EXISTS (SELECT 1 FROM api_keys k JOIN api_key_roles kr ON kr.api_key_id = k.id
                        WHERE kr.role_id = ${id} AND (k.expires_at IS NULL OR k.expires_at > ${at})) AS beyond`;
      return rows[0]?.beyond === true;
    },

    /**
     * The keys holding the role get new versions (their permissions or role names changed) and a
     * notification each, delivered on commit: every instance's cache re-reads them on next use.
     * Returns their ids. The caller's transaction is marked as keyward's own write.
     */
    async bumpHolders(tx: Tx, id: number, notify: (keyId: string) => string, channel: string): Promise<string[]> {
      const rows = await tx.$queryRaw<Array<{ id: string }>>`
        UPDATE api_keys SET version = version + 1
         WHERE id IN (SELECT api_key_id FROM api_key_roles WHERE role_id = ${id})
        RETURNING id`;
      const ids = rows.map((r) => r.id);
      const payloads = ids.map(notify);
      for (let i = 0; i < payloads.length; i += 1000) {
        await tx.$executeRaw`SELECT pg_notify(${channel}, p) FROM unnest(${payloads.slice(i, i + 1000)}::text[]) AS p`;
      }
      return ids;
    },

    /** Appends a history row; the role's row is locked (or new), so versions cannot race. */
    async writeHistory(tx: Tx, roleId: number, entry: Omit<RoleChangeRow, 'version' | 'changedAt'> & { at: Date }): Promise<void> {
      const last = await tx.roleChange.aggregate({ where: { roleId }, _max: { version: true } });
      await tx.roleChange.create({
        data: {
          roleId,
          version: (last._max.version ?? 0) + 1,
          operation: entry.operation,
          changedAt: entry.at,
          actorType: entry.actorType,
          actorId: entry.actorId,
          actorName: entry.actorName,
          changeReason: entry.changeReason,
          snapshot: entry.snapshot as Prisma.InputJsonValue,
        },
      });
    },

    /** History rows, newest first, after `beforeVersion` (exclusive) when given. */
    history: (roleId: number, beforeVersion: number | null, take: number): Promise<RoleChangeRow[]> =>
      prisma.roleChange.findMany({
        where: { roleId, ...(beforeVersion !== null ? { version: { lt: beforeVersion } } : {}) },
        orderBy: { version: 'desc' },
        take,
      }),
  };
}

export type RoleStore = ReturnType<typeof createRoleStore>;
