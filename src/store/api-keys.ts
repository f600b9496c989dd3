// The one home of the keys' SQL: every query on api_keys and api_key_roles, the row type they
// produce (StoredKey), and its mappers to the API view and to the cached principal. Services
// and the authenticator ask for keys here; nothing else writes SQL for them.
import { effectivePermissions, listPermissions } from '../auth/permissions.js';
import { addressMatcher } from '../lib/cidr.js';
import type { Principal } from '../auth/principal.js';
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';
import { SNAPSHOT_FIELDS, type ApiKeyView, type Snapshot } from '../schemas/api-keys.js';

export type Tx = Prisma.TransactionClient;
type Db = PrismaClient | Tx;

/** A key as stored: its row and its roles (with their permissions). */
export interface StoredKey {
  id: string;
  name: string;
  description: string | null;
  keyPrefix: string;
  /** argon2id PHC string; never leaves the server (response schemas have no field for it). */
  hash: string;
  isEnabled: boolean;
  isInfrastructureKey: boolean;
  expiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  lastUsedAt: Date | null;
  lastUsedFromIp: string | null;
  /** When it was last enabled again after being disabled; null: never. */
  enabledAt: Date | null;
  version: number;
  /** While disabled: the permissions of whoever disabled it (the escalation guard's). */
  disabledBy: string[];
  /** The owner's own data (a JSON object). */
  metadata: Metadata;
  /** The secret a rotation replaced and until when it is accepted (null: none, or its grace is over). */
  previousKeyPrefix: string | null;
  previousHash: string | null;
  previousKeyExpiresAt: Date | null;
  /** Canonical CIDR blocks; [] for any address. */
  allowedCidrs: string[];
  rateLimitMax: number | null;
  rateLimitWindowSeconds: number | null;
  roles: Array<{ id: number; name: string; permissions: string[] }>;
}

/**
 * The key's own limit, from its two columns. keyward writes both or neither; anything else (a
 * direct-SQL edit: one column, a limit below 1, a window out of range) reads as the server
 * default rather than as a limit that refuses everything.
 */
export const rateLimitOf = (k: { rateLimitMax: number | null; rateLimitWindowSeconds: number | null }) =>
  k.rateLimitMax !== null && k.rateLimitMax >= 1 && k.rateLimitWindowSeconds !== null && k.rateLimitWindowSeconds >= 1 && k.rateLimitWindowSeconds <= 86_400
    ? { limit: k.rateLimitMax, windowSeconds: k.rateLimitWindowSeconds }
    : null;

/**
 * Whether a rotation's grace period is running at `at` (ms): the replaced secret is accepted.
 * (keyward writes the replaced prefix, hash and end together, so an end implies the hash.)
 */
export const graceRunning = (k: { previousKeyExpiresAt: Date | null }, at: number) => k.previousKeyExpiresAt !== null && new Date(k.previousKeyExpiresAt).getTime() > at;

export type Metadata = Record<string, unknown>;
/** jsonb as it comes back: an object (anything else, written behind the server's back, reads as {}). */
const metadataOf = (v: unknown): Metadata => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Metadata) : {});

/**
 * Marks the transaction's writes as keyward's own: the row-version triggers (for changes made
 * behind the server's back) then stand aside, as keyward versions its rows itself.
 */
export async function markOwnWrite(tx: Tx): Promise<void> {
  await tx.$executeRaw`SELECT set_config('keyward.versioned', 'on', true)`;
}

const include = { roles: { include: { role: true }, orderBy: { roleId: 'asc' } } } as const;
type PrismaKey = Prisma.ApiKeyGetPayload<{ include: typeof include }>;

function fromPrisma(row: PrismaKey): StoredKey {
  const { roles, disabledBy, metadata, allowedCidrs, ...rest } = row;
  return {
    ...rest,
    disabledBy: disabledBy ?? [],
    metadata: metadataOf(metadata),
    allowedCidrs: allowedCidrs ?? [],
    roles: roles.map((r) => ({ id: r.role.id, name: r.role.name, permissions: r.role.permissions })),
  };
}

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

/** The key as the API shows it at `at` (never a hash): the replaced secret's prefix only while its grace period runs. */
export function toView(
  key: Omit<StoredKey, 'hash' | 'previousHash' | 'version' | 'disabledBy' | 'roles' | 'enabledAt'> & { roles: Array<{ id: number; name: string }> },
  at: number = Date.now(),
): ApiKeyView {
  const grace = graceRunning(key, at);
  return {
    id: key.id,
    name: key.name,
    description: key.description,
    keyPrefix: key.keyPrefix,
    roles: key.roles.map((r) => ({ id: r.id, name: r.name })),
    isEnabled: key.isEnabled,
    isInfrastructureKey: key.isInfrastructureKey,
    expiresAt: iso(key.expiresAt),
    createdAt: iso(key.createdAt)!,
    updatedAt: iso(key.updatedAt)!,
    lastUsedAt: iso(key.lastUsedAt),
    lastUsedFromIp: key.lastUsedFromIp,
    metadata: key.metadata,
    previousKeyPrefix: grace ? key.previousKeyPrefix : null,
    previousKeyExpiresAt: grace ? iso(key.previousKeyExpiresAt) : null,
    allowedCidrs: key.allowedCidrs.length ? key.allowedCidrs : null,
    rateLimit: rateLimitOf(key),
  };
}

/** The key as a request's principal (what the verified-key cache keeps). */
export function toPrincipal(
  key: Pick<StoredKey, 'id' | 'name' | 'keyPrefix' | 'roles' | 'isInfrastructureKey' | 'expiresAt' | 'metadata' | 'allowedCidrs' | 'rateLimitMax' | 'rateLimitWindowSeconds'>,
): Principal {
  const permissions = effectivePermissions(key.roles.map((r) => r.permissions));
  return {
    id: key.id,
    name: key.name,
    keyPrefix: key.keyPrefix,
    roles: key.roles.map((r) => ({ id: r.id, name: r.name })),
    permissions,
    permissionList: listPermissions(permissions),
    isInfrastructureKey: key.isInfrastructureKey,
    expiresAt: key.expiresAt ? new Date(key.expiresAt).getTime() : null,
    metadata: key.metadata,
    allowedCidrs: key.allowedCidrs.length ? key.allowedCidrs : null,
    allowsAddress: key.allowedCidrs.length ? addressMatcher(key.allowedCidrs) : null,
    rateLimit: rateLimitOf(key),
    secretExpiresAt: null,
  };
}

/** The effective permissions a key's roles give it. */
export const permissionsOf = (key: Pick<StoredKey, 'roles'>) => effectivePermissions(key.roles.map((r) => r.permissions));

/** A change-history snapshot of the key (its SNAPSHOT_FIELDS). */
export const snapshotOf = (view: ApiKeyView): Snapshot => Object.fromEntries(SNAPSHOT_FIELDS.map((f) => [f, view[f]])) as Snapshot;

export interface KeyWrite {
  name: string;
  description: string | null;
  roleIds: number[];
  isEnabled: boolean;
  disabledBy: string[];
  expiresAt: Date | null;
  metadata: Metadata;
  allowedCidrs: string[];
  rateLimit: { limit: number; windowSeconds: number } | null;
}

/** The sort key of the listing (and of its cursors): lower(name) in code-point order, then id. */
export interface ListPosition {
  name: string;
  id: string;
}

interface ListRow {
  id: string;
  name: string;
  description: string | null;
  key_prefix: string;
  is_enabled: boolean;
  is_infrastructure_key: boolean;
  expires_at: Date | null;
  created_at: Date;
  updated_at: Date;
  last_used_at: Date | null;
  last_used_from_ip: string | null;
  metadata: unknown;
  previous_key_prefix: string | null;
  previous_key_expires_at: Date | null;
  allowed_cidrs: string[] | null;
  rate_limit_max: number | null;
  rate_limit_window_seconds: number | null;
  sort_name: string;
  roles: Array<{ id: number; name: string }>;
}

/**
 * The listing query (exported so the benchmark can EXPLAIN exactly what is sent): one round
 * trip for the page and each key's roles. Filters are written against the index expression
 * (lower(name) COLLATE "C"), so a prefix pattern is an index range scan whatever the database's
 * default collation. `likePattern` is a SQL LIKE pattern with `\` as its escape.
 */
export function listStatement(q: { likePattern?: string; isEnabled?: boolean; unusedSince?: Date; after?: ListPosition | null; take: number }) {
  const where: Prisma.Sql[] = [];
  if (q.likePattern !== undefined) where.push(Prisma.sql`(lower(name) COLLATE "C") LIKE (lower(${q.likePattern}) COLLATE "C") ESCAPE '\\'`);
  if (q.isEnabled !== undefined) where.push(Prisma.sql`is_enabled = ${q.isEnabled}`);
  if (q.unusedSince !== undefined) where.push(Prisma.sql`(last_used_at IS NULL OR last_used_at < ${q.unusedSince.toISOString()}::timestamptz)`);
  if (q.after) where.push(Prisma.sql`(lower(name) COLLATE "C", id) > (${q.after.name} COLLATE "C", ${q.after.id}::uuid)`);
  return Prisma.sql`
    SELECT k.id, k.name, k.description, k.key_prefix, k.is_enabled, k.is_infrastructure_key,
           k.expires_at, k.created_at, k.updated_at, k.last_used_at, k.last_used_from_ip, k.metadata,
           k.previous_key_prefix, k.previous_key_expires_at, k.allowed_cidrs, k.rate_limit_max, k.rate_limit_window_seconds,
           lower(k.name) AS sort_name,
           coalesce((SELECT json_agg(json_build_object('id', r.id, 'name', r.name) ORDER BY r.id)
                       FROM api_key_roles kr JOIN roles r ON r.id = kr.role_id
                      WHERE kr.api_key_id = k.id), '[]') AS roles
      FROM api_keys k
    ${where.length ? Prisma.sql`WHERE ${Prisma.join(where, ' AND ')}` : Prisma.empty}
    ORDER BY lower(k.name) COLLATE "C", k.id
    LIMIT ${q.take}`;
}

/** A key read for authentication: one indexed read of its row and roles. */
interface AuthRow {
  id: string;
  name: string;
  key_prefix: string;
  hash: string;
  version: number;
  is_enabled: boolean;
  is_infrastructure_key: boolean;
  expires_at: Date | null;
  metadata: unknown;
  previous_key_prefix: string | null;
  previous_hash: string | null;
  previous_key_expires_at: Date | null;
  allowed_cidrs: string[] | null;
  rate_limit_max: number | null;
  rate_limit_window_seconds: number | null;
  roles: Array<{ id: number; name: string; permissions: string[] }>;
}

const fromAuthRow = (r: AuthRow) => ({
  id: r.id,
  name: r.name,
  keyPrefix: r.key_prefix,
  hash: r.hash,
  version: r.version,
  isEnabled: r.is_enabled,
  isInfrastructureKey: r.is_infrastructure_key,
  expiresAt: r.expires_at ? new Date(r.expires_at) : null,
  metadata: metadataOf(r.metadata),
  previousKeyPrefix: r.previous_key_prefix,
  previousHash: r.previous_hash,
  previousKeyExpiresAt: r.previous_key_expires_at ? new Date(r.previous_key_expires_at) : null,
  allowedCidrs: r.allowed_cidrs ?? [],
  rateLimitMax: r.rate_limit_max,
  rateLimitWindowSeconds: r.rate_limit_window_seconds,
  roles: r.roles,
});

export type AuthKey = ReturnType<typeof fromAuthRow>;

function authRows(db: Db, where: Prisma.Sql) {
  return db.$queryRaw<AuthRow[]>`
    SELECT k.id, k.name, k.key_prefix, k.hash, k.version, k.is_enabled, k.is_infrastructure_key, k.expires_at, k.metadata,
           k.previous_key_prefix, k.previous_hash, k.previous_key_expires_at, k.allowed_cidrs, k.rate_limit_max, k.rate_limit_window_seconds,
           coalesce(json_agg(json_build_object('id', r.id, 'name', r.name, 'permissions', r.permissions) ORDER BY r.id)
                    FILTER (WHERE r.id IS NOT NULL), '[]') AS roles
      FROM api_keys k
      LEFT JOIN api_key_roles kr ON kr.api_key_id = k.id
      LEFT JOIN roles r ON r.id = kr.role_id
     WHERE ${where}
     GROUP BY k.id`;
}

const rateLimitColumns = (r: KeyWrite['rateLimit']) => ({ rateLimitMax: r?.limit ?? null, rateLimitWindowSeconds: r?.windowSeconds ?? null });

export function createKeyStore(prisma: PrismaClient) {
  return {
    /** One page of the listing, with the position of each row (for cursors). */
    async list(q: { likePattern?: string; isEnabled?: boolean; unusedSince?: Date; after?: ListPosition | null; take: number }) {
      const rows = await prisma.$queryRaw<ListRow[]>(listStatement(q));
      return rows.map((r) => ({
        view: toView({
          id: r.id,
          name: r.name,
          description: r.description,
          keyPrefix: r.key_prefix,
          roles: r.roles,
          isEnabled: r.is_enabled,
          isInfrastructureKey: r.is_infrastructure_key,
          expiresAt: r.expires_at,
          createdAt: r.created_at,
          updatedAt: r.updated_at,
          lastUsedAt: r.last_used_at,
          lastUsedFromIp: r.last_used_from_ip,
          metadata: metadataOf(r.metadata),
          previousKeyPrefix: r.previous_key_prefix,
          previousKeyExpiresAt: r.previous_key_expires_at,
          allowedCidrs: r.allowed_cidrs ?? [],
          rateLimitMax: r.rate_limit_max,
          rateLimitWindowSeconds: r.rate_limit_window_seconds,
        }),
        position: { name: r.sort_name, id: r.id },
      }));
    },

    async find(id: string, db: Db = prisma): Promise<StoredKey | null> {
      const row = await db.apiKey.findUnique({ where: { id }, include });
      return row && fromPrisma(row);
    },

    /** Locks the key's row for the rest of the transaction, then reads it; null when there is none. */
    async lock(tx: Tx, id: string): Promise<StoredKey | null> {
      const locked = await tx.$queryRaw<Array<{ id: string }>>`SELECT id FROM api_keys WHERE id = ${id}::uuid FOR UPDATE`;
      return locked.length ? fromPrisma(await tx.apiKey.findUniqueOrThrow({ where: { id }, include })) : null;
    },

    async insert(tx: Tx, key: KeyWrite & { id: string; keyPrefix: string; hash: string; isInfrastructureKey: boolean; at: Date }): Promise<StoredKey> {
      const { roleIds, at, metadata, rateLimit, ...fields } = key;
      const row = await tx.apiKey.create({
        data: { ...fields, ...rateLimitColumns(rateLimit), metadata: metadata as Prisma.InputJsonObject, createdAt: at, updatedAt: at, version: 1, roles: { create: roleIds.map((roleId) => ({ roleId })) } },
        include,
      });
      return fromPrisma(row);
    },

    /** `enabledAt`: set when this change enables a disabled key (the idle-key policy counts from it). */
    async update(tx: Tx, id: string, key: KeyWrite & { version: number; at: Date; enabledAt?: Date }): Promise<StoredKey> {
      const { roleIds, at, metadata, rateLimit, ...fields } = key;
      const row = await tx.apiKey.update({
        where: { id },
        data: { ...fields, ...rateLimitColumns(rateLimit), metadata: metadata as Prisma.InputJsonObject, updatedAt: at, roles: { deleteMany: {}, create: roleIds.map((roleId) => ({ roleId })) } },
        include,
      });
      return fromPrisma(row);
    },

    /**
     * A new secret for the key (same id). `previous`, when given, is the replaced secret and the
     * end of its grace period; null ends any grace period at once.
     */
    async rotate(tx: Tx, id: string, key: { keyPrefix: string; hash: string; previous: { keyPrefix: string; hash: string; until: Date } | null; version: number; at: Date }): Promise<StoredKey> {
      const row = await tx.apiKey.update({
        where: { id },
        data: {
          keyPrefix: key.keyPrefix,
          hash: key.hash,
          previousKeyPrefix: key.previous?.keyPrefix ?? null,
          previousHash: key.previous?.hash ?? null,
          previousKeyExpiresAt: key.previous?.until ?? null,
          version: key.version,
          updatedAt: key.at,
        },
        include,
      });
      return fromPrisma(row);
    },

    /** Ends a grace period now (the replaced secret was reported leaked). */
    async endGrace(tx: Tx, id: string, key: { version: number; at: Date }): Promise<StoredKey> {
      const row = await tx.apiKey.update({
        where: { id },
        data: { previousKeyPrefix: null, previousHash: null, previousKeyExpiresAt: null, version: key.version, updatedAt: key.at },
        include,
      });
      return fromPrisma(row);
    },

    async delete(tx: Tx, id: string): Promise<void> {
      await tx.apiKey.delete({ where: { id } });
    },

    async exists(id: string, db: Db = prisma): Promise<boolean> {
      return (await db.apiKey.count({ where: { id } })) > 0;
    },

    /**
     * Every key sharing a prefix, for authentication (argon2 decides which, if any, it is): as its
     * secret, or as the secret a rotation replaced while its grace period runs.
     */
    async byPrefix(prefix: string, at: Date = new Date()): Promise<AuthKey[]> {
      // `at`, not the database's now(): the grace period is judged on one clock, the server's.
      return (
        await authRows(prisma, Prisma.sql`(k.key_prefix = ${prefix} OR (k.previous_key_prefix = ${prefix} AND k.previous_key_expires_at > ${at}))`)
      ).map(fromAuthRow);
    },

    /** A key as authentication needs it, re-read after a change. */
    async forAuth(id: string): Promise<AuthKey | null> {
      const [row] = await authRows(prisma, Prisma.sql`k.id = ${id}::uuid`);
      return row ? fromAuthRow(row) : null;
    },

    /** The row version alone: the cheap check that a cached key has not changed. */
    async versionOf(id: string): Promise<number | null> {
      const rows = await prisma.$queryRaw<Array<{ version: number }>>`SELECT version FROM api_keys WHERE id = ${id}::uuid`;
      return rows[0]?.version ?? null;
    },

    /** Replaces a key's hash with a rehash of the same secret, if it is still `oldHash` (keyward's own write); whether it did. */
    async replaceHash(id: string, oldHash: string, hash: string): Promise<boolean> {
      return prisma.$transaction(async (tx) => {
        await markOwnWrite(tx);
        return (await tx.apiKey.updateMany({ where: { id, hash: oldHash }, data: { hash } })).count === 1;
      });
    },

    /** Records last uses; a use is written only when it is 30 s or more after the stored one. */
    async recordUses(uses: Array<{ id: string; at: Date; ip: string }>, throttleMs: number): Promise<void> {
      const throttle = `${throttleMs} milliseconds`;
      await prisma.$executeRaw`
        UPDATE api_keys AS k SET last_used_at = v.at, last_used_from_ip = v.ip
        FROM unnest(${uses.map((u) => u.id)}::uuid[], ${uses.map((u) => u.at.toISOString())}::timestamptz[], ${uses.map((u) => u.ip)}::text[]) AS v(id, at, ip)
        WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at - ${throttle}::interval)`;
    },

    /** Whether some enabled, unexpired key holds apikeys.write (so someone can create the others). */
    async anyCanCreateKeys(): Promise<boolean> {
      const rows = await prisma.$queryRaw<Array<{ usable: boolean }>>`
        SELECT EXISTS (
          SELECT 1 FROM api_keys k
            JOIN api_key_roles kr ON kr.api_key_id = k.id
            JOIN roles r ON r.id = kr.role_id
           WHERE k.is_enabled AND (k.expires_at IS NULL OR k.expires_at > now())
             AND r.permissions && ARRAY['*', 'apikeys.write']::text[]) AS usable`;
      return rows[0]?.usable === true;
    },
  };
}

export type KeyStore = ReturnType<typeof createKeyStore>;
