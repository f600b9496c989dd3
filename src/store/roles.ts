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

/** Whether a Prisma error is the unique violation of a role name (the case-insensitive index included). */
export const isNameConflict = (err: unknown) =>
  (err instanceof Prisma.PrismaClientKnownRequestError && err.code === 'P2002') ||
  (err instanceof Error && /roles_lower_name_key|roles_name_key/.test(err.message));

export function createRoleStore(prisma: PrismaClient) {
  return {
    list: (db: Db = prisma): Promise<StoredRole[]> => db.role.findMany({ orderBy: { id: 'asc' } }),

    find: (id: number, db: Db = prisma): Promise<StoredRole | null> => db.role.findUnique({ where: { id } }),

    /** Locks the role's row for the rest of the transaction (key changes that assign it wait), then reads it. */
    async lock(tx: Tx, id: number): Promise<StoredRole | null> {
      const locked = await tx.$queryRaw<Array<{ id: number }>>`SELECT id FROM roles WHERE id = ${id} FOR UPDATE`;
      return locked.length ? tx.role.findUniqueOrThrow({ where: { id } }) : null;
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
