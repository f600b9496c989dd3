// The API key lifecycle. Every change runs in one transaction with its history row; the row is
// locked first, so concurrent changes of one key apply one after the other.
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { generateKey, keyPrefixOf } from '../auth/key-format.js';
import type { KeyHasher } from '../auth/hasher.js';
import { ALL, covers, effectivePermissions, listPermissions } from '../auth/permissions.js';
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';
import { AppError, ValidationError } from '../lib/errors.js';
import { asRoleIdList, type ApiKeyView, type CreateInput, type PatchInput, type ReplaceInput } from '../schemas/api-keys.js';
import { encodeKeyEvent, KEY_CHANNEL, type KeyEventOp } from '../db/key-events.js';
import { createCursorKeyLoader } from './cursor-key.js';
import { decodeCursor, encodeCursor, wildcardToLike } from './paging.js';

export const UNPAGED_CAP = 10_000;

export interface Actor {
  type: 'apiKey' | 'system';
  id: string | null;
  name: string | null;
  /** Effective permissions ("*" included when held); the escalation guard compares against them. */
  permissions: Set<string>;
  /** When the caller's own key expires, if it does: what it creates or changes stays within it. */
  expiresAt?: Date | null;
}

export const SYSTEM_ACTOR: Actor = { type: 'system', id: null, name: 'system', permissions: new Set(['*']), expiresAt: null };

type Tx = Prisma.TransactionClient;

const keyInclude = { roles: { include: { role: true }, orderBy: { roleId: 'asc' } } } as const;
type KeyRow = Prisma.ApiKeyGetPayload<{ include: typeof keyInclude }>;

export function toView(row: KeyRow): ApiKeyView {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    keyPrefix: row.keyPrefix,
    roles: row.roles.map((r) => ({ id: r.role.id, name: r.role.name })),
    isEnabled: row.isEnabled,
    isInfrastructureKey: row.isInfrastructureKey,
    expiresAt: row.expiresAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    lastUsedFromIp: row.lastUsedFromIp,
  };
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
  sort_name: string;
  roles: Array<{ id: number; name: string }>;
}

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

function listRowToView(r: ListRow): ApiKeyView {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    keyPrefix: r.key_prefix,
    roles: r.roles,
    isEnabled: r.is_enabled,
    isInfrastructureKey: r.is_infrastructure_key,
    expiresAt: iso(r.expires_at),
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
    lastUsedAt: iso(r.last_used_at),
    lastUsedFromIp: r.last_used_from_ip,
  };
}

/**
 * The listing query (exported so the benchmark can EXPLAIN exactly what is sent): one round
 * trip for the page and each key's roles. Filters are written against the index expression
 * (lower(name) COLLATE "C"), so a prefix pattern is an index range scan whatever the database's
 * default collation.
 */
export function listStatement(q: { name?: string; isEnabled?: boolean; after?: { name: string; id: string } | null; take: number }) {
  const where: Prisma.Sql[] = [];
  if (q.name !== undefined) {
    where.push(Prisma.sql`(lower(name) COLLATE "C") LIKE (lower(${wildcardToLike(q.name)}) COLLATE "C") ESCAPE '\\'`);
  }
  if (q.isEnabled !== undefined) where.push(Prisma.sql`is_enabled = ${q.isEnabled}`);
  if (q.after) where.push(Prisma.sql`(lower(name) COLLATE "C", id) > (${q.after.name} COLLATE "C", ${q.after.id}::uuid)`);
  return Prisma.sql`
    SELECT k.id, k.name, k.description, k.key_prefix, k.is_enabled, k.is_infrastructure_key,
           k.expires_at, k.created_at, k.updated_at, k.last_used_at, k.last_used_from_ip,
           lower(k.name) AS sort_name,
           coalesce((SELECT json_agg(json_build_object('id', r.id, 'name', r.name) ORDER BY r.id)
                       FROM api_key_roles kr JOIN roles r ON r.id = kr.role_id
                      WHERE kr.api_key_id = k.id), '[]') AS roles
      FROM api_keys k
    ${where.length ? Prisma.sql`WHERE ${Prisma.join(where, ' AND ')}` : Prisma.empty}
    ORDER BY lower(k.name) COLLATE "C", k.id
    LIMIT ${q.take}`;
}

export const etagOf = (row: { id: string; version: number }) => `"${row.version}"`;

function snapshot(view: ApiKeyView) {
  const { name, description, keyPrefix, roles, isEnabled, isInfrastructureKey, expiresAt } = view;
  return { name, description, keyPrefix, roles, isEnabled, isInfrastructureKey, expiresAt };
}

/** RFC 9110 If-Match: strong comparison, so a weak tag (W/"…") never matches. */
function matchesIfMatch(ifMatch: string | undefined, etag: string): boolean {
  if (ifMatch === undefined) return true;
  return ifMatch
    .split(',')
    .map((t) => t.trim())
    .some((t) => t === '*' || t === etag);
}

export interface ListOptions {
  name?: string;
  isEnabled?: boolean;
  limit?: number;
  cursor?: string;
}

export function createApiKeyService(deps: {
  prisma: PrismaClient;
  hasher: KeyHasher;
  log: FastifyBaseLogger;
  /** Called after a change to a key commits, before the caller replies (local cache). */
  onChanged?: (keyId: string, op: KeyEventOp) => void;
  /** Names this process in its notifications, so it can skip its own echoes. */
  instanceId?: string;
  cursorKey?: () => Promise<Buffer>;
  now?: () => Date;
}) {
  const { prisma, hasher } = deps;
  const now = deps.now ?? (() => new Date());
  const changed = (id: string, op: KeyEventOp) => deps.onChanged?.(id, op);
  const instanceId = deps.instanceId ?? randomUUID();

  /** We bump row versions ourselves in this transaction: the database triggers stand aside. */
  async function versioned(tx: Tx) {
    await tx.$executeRaw`SELECT set_config('keyward.versioned', 'on', true)`;
  }

  /** Tells every instance, on commit: PostgreSQL delivers a NOTIFY only if its transaction commits. */
  async function announce(tx: Tx, keyId: string, op: KeyEventOp) {
    await tx.$executeRaw`SELECT pg_notify(${KEY_CHANNEL}, ${encodeKeyEvent({ instanceId, op, keyId })})`;
  }

  const loadCursorKey = deps.cursorKey ?? createCursorKeyLoader(prisma);

  async function rolesById(tx: Tx | PrismaClient, ids: number[]) {
    if (!ids.length) return new Map<number, { id: number; name: string; permissions: string[] }>();
    const roles = await tx.role.findMany({ where: { id: { in: ids } } });
    return new Map(roles.map((r) => [r.id, r]));
  }

  async function requireRoles(tx: Tx, ids: number[]) {
    const found = await rolesById(tx, ids);
    const missing = ids.filter((id) => !found.has(id));
    if (missing.length) {
      throw new ValidationError(
        [{ field: 'roleIds', message: `names ${missing.length > 1 ? 'roles that do' : 'a role that does'} not exist: ${missing.join(', ')} (GET /api/v1/roles lists them)` }],
        `One or more role IDs are invalid: ${missing.join(', ')}.`,
      );
    }
    return effectivePermissions([...found.values()].map((r) => r.permissions));
  }

  /**
   * The escalation guard. A caller may only touch keys whose permissions are within its own, and,
   * unless it holds "*", what it does stays contained:
   * - permissions: the key's current and resulting permissions must both be within the caller's;
   * - expiry: a caller whose own key expires cannot give any key (itself included) an expiry
   *   later than its own, nor none at all; shortening an expiry, or leaving it as it is, is fine;
   * - enabling: a key disabled by a caller whose permissions this one does not hold (or by
   *   someone unknown, e.g. before this rule existed) can only be enabled again by such a caller.
   */
  function guard(actor: Actor, needed: Set<string>, what: string) {
    if (!covers(actor.permissions, needed)) {
      const missing = [...needed].filter((p) => !actor.permissions.has(p)).map((p) => (p === '*' ? '* (every permission)' : p));
      throw new AppError('FORBIDDEN', `You cannot ${what}: that needs permissions your key does not have: ${missing.join(', ')}.`);
    }
  }

  /**
   * `current` is undefined for a new key. `widens`: the change gives the key more than it had (a
   * permission it lacked, or being enabled again); then its expiry must be within the caller's
   * whatever it was before, or a caller could promote a key that outlives it.
   */
  function guardExpiry(actor: Actor, current: Date | null | undefined, next: Date | null, widens = false) {
    if (actor.permissions.has(ALL) || !actor.expiresAt) return;
    const ms = (d: Date | null | undefined) => (d ? d.getTime() : null);
    const limit = actor.expiresAt.getTime();
    if (!widens) {
      if (current !== undefined && ms(current) === ms(next)) return;
      // Giving an existing key a nearer end than it had (never counts as the farthest) contains it further.
      const shortened = next !== null && current !== undefined && (current === null || next.getTime() <= current.getTime());
      if (next !== null && shortened) return;
    }
    if (next !== null && next.getTime() <= limit) return;
    const own = actor.expiresAt.toISOString();
    throw new AppError('FORBIDDEN', 
      widens
        ? `Your key expires at ${own}: a key it gives more permissions to, or enables, must expire by then too. Set expiresAt to ${own} or earlier in the same request.`
        : `Your key expires at ${own}: it cannot give a key ${next === null ? 'no expiry' : 'a later expiry'}. Set expiresAt to ${own} or earlier.`,
    );
  }

  function guardEnable(actor: Actor, current: KeyRow, nextEnabled: boolean) {
    if (current.isEnabled || !nextEnabled) return;
    const disabledBy = current.disabledBy?.length ? current.disabledBy : [ALL];
    const needed = new Set(disabledBy);
    if (!covers(actor.permissions, needed)) {
      const missing = [...needed].filter((p) => !actor.permissions.has(p)).map((p) => (p === ALL ? '* (every permission)' : p));
      throw new AppError('FORBIDDEN', 
        `This key was disabled by a caller with permissions your key does not have (${missing.join(', ')}); only such a caller can enable it again.`,
      );
    }
  }

  /** What disabledBy becomes: the disabler's permissions when a key goes (or is made) disabled. */
  const disabledByAfter = (actor: Actor, wasEnabled: boolean, previous: string[], enabled: boolean) =>
    enabled ? [] : wasEnabled ? listPermissions(actor.permissions) : previous;

  /**
   * History versions are their own 1, 2, 3… per key (the row version may also move for changes
   * made outside keyward). The key's row is locked, so this read-then-insert cannot race.
   */
  async function writeHistory(tx: Tx, keyId: string, operation: string, actor: Actor, reason: string | null | undefined, view: ApiKeyView) {
    const last = await tx.apiKeyChange.aggregate({ where: { apiKeyId: keyId }, _max: { version: true } });
    await tx.apiKeyChange.create({
      data: {
        apiKeyId: keyId,
        version: (last._max.version ?? 0) + 1,
        operation,
        actorType: actor.type,
        actorId: actor.id,
        actorName: actor.name,
        changeReason: reason ?? null,
        snapshot: snapshot(view),
      },
    });
  }

  /** Locks the row for the rest of the transaction, then reads it. */
  async function lockKey(tx: Tx, id: string): Promise<KeyRow> {
    const locked = await tx.$queryRaw<Array<{ id: string }>>`SELECT id FROM api_keys WHERE id = ${id}::uuid FOR UPDATE`;
    if (!locked.length) throw new AppError('API_KEY_NOT_FOUND');
    return tx.apiKey.findUniqueOrThrow({ where: { id }, include: keyInclude });
  }

  async function applyUpdate(
    actor: Actor,
    id: string,
    ifMatch: string | undefined,
    next: (current: KeyRow) => {
      name: string;
      description: string | null;
      roleIds: number[];
      isEnabled: boolean;
      expiresAt: Date | null;
    },
    reason: string | null | undefined,
  ) {
    const result = await prisma.$transaction(async (tx) => {
      await versioned(tx);
      const current = await lockKey(tx, id);
      if (!matchesIfMatch(ifMatch, etagOf(current))) throw new AppError('PRECONDITION_FAILED');
      const currentPerms = effectivePermissions(current.roles.map((r) => r.role.permissions));
      guard(actor, currentPerms, 'change this key');
      const target = next(current);
      const targetPerms = await requireRoles(tx, target.roleIds);
      guard(actor, targetPerms, 'give this key those roles');
      const widens = [...targetPerms].some((p) => !currentPerms.has(p)) || (!current.isEnabled && target.isEnabled);
      guardExpiry(actor, current.expiresAt, target.expiresAt, widens);
      guardEnable(actor, current, target.isEnabled);

      const version = current.version + 1;
      const row = await tx.apiKey.update({
        where: { id },
        data: {
          name: target.name,
          description: target.description,
          isEnabled: target.isEnabled,
          disabledBy: disabledByAfter(actor, current.isEnabled, current.disabledBy ?? [], target.isEnabled),
          expiresAt: target.expiresAt,
          updatedAt: now(),
          version,
          roles: { deleteMany: {}, create: target.roleIds.map((roleId) => ({ roleId })) },
        },
        include: keyInclude,
      });
      const view = toView(row);
      await writeHistory(tx, id, 'update', actor, reason, view);
      await announce(tx, id, 'update');
      return { key: view, etag: etagOf(row) };
    });
    changed(id, 'update');
    return result;
  }

  return {
    async list(opts: ListOptions): Promise<{ items: ApiKeyView[]; next: string | null }> {
      const limit = opts.limit ?? UNPAGED_CAP;
      const signing = opts.cursor !== undefined || opts.limit !== undefined ? await loadCursorKey() : null;
      const after = opts.cursor !== undefined ? decodeCursor(opts.cursor, signing!) : null;
      const rows = await prisma.$queryRaw<ListRow[]>(listStatement({ name: opts.name, isEnabled: opts.isEnabled, after, take: limit + 1 }));
      const page = rows.slice(0, limit);
      const items = page.map(listRowToView);
      const last = page.at(-1);
      const next = rows.length > limit && signing && last ? encodeCursor({ name: last.sort_name, id: last.id }, signing) : null;
      return { items, next };
    },

    async get(id: string) {
      const row = await prisma.apiKey.findUnique({ where: { id }, include: keyInclude });
      if (!row) throw new AppError('API_KEY_NOT_FOUND');
      return { key: toView(row), etag: etagOf(row) };
    },

    async create(
      actor: Actor,
      input: CreateInput,
      extra: { secret?: string; isInfrastructureKey?: boolean; tx?: Tx; at?: Date } = {},
    ) {
      const at = extra.at ?? now();
      if (input.expiresAt && new Date(input.expiresAt).getTime() <= at.getTime()) {
        throw new ValidationError([{ field: 'expiresAt', message: 'must be in the future' }]);
      }
      const secret = extra.secret ?? generateKey();
      const hash = await hasher.hash(secret); // before the transaction: argon2 is slow
      const roleIds = input.roleIds ?? [];
      const inTx = async (tx: Tx) => {
        await versioned(tx);
        guard(actor, await requireRoles(tx, roleIds), 'create a key with those roles');
        guardExpiry(actor, undefined, input.expiresAt ? new Date(input.expiresAt) : null);
        const row = await tx.apiKey.create({
          data: {
            id: randomUUID(),
            name: input.name,
            description: input.description ?? null,
            keyPrefix: keyPrefixOf(secret),
            hash,
            isEnabled: input.isEnabled ?? true,
            disabledBy: disabledByAfter(actor, true, [], input.isEnabled ?? true),
            isInfrastructureKey: extra.isInfrastructureKey ?? false,
            expiresAt: input.expiresAt ? new Date(input.expiresAt) : null,
            createdAt: at,
            updatedAt: at,
            version: 1,
            roles: { create: roleIds.map((roleId) => ({ roleId })) },
          },
          include: keyInclude,
        });
        const view = toView(row);
        await writeHistory(tx, row.id, 'create', actor, input.changeReason, view);
        await announce(tx, row.id, 'create'); // other instances drop negative-cache entries
        return { key: view, secret, etag: etagOf(row) };
      };
      if (extra.tx) return inTx(extra.tx); // the caller's transaction; it announces on commit
      const created = await prisma.$transaction(inTx);
      changed(created.key.id, 'create');
      return created;
    },

    replace(actor: Actor, id: string, input: ReplaceInput, ifMatch?: string) {
      return applyUpdate(
        actor,
        id,
        ifMatch,
        () => ({
          name: input.name,
          description: input.description ?? null,
          roleIds: asRoleIdList(input.roleIds),
          isEnabled: input.isEnabled,
          expiresAt: input.expiresAt ? new Date(input.expiresAt) : null,
        }),
        input.changeReason,
      );
    },

    patch(actor: Actor, id: string, input: PatchInput, ifMatch?: string) {
      return applyUpdate(
        actor,
        id,
        ifMatch,
        (current) => ({
          name: input.name ?? current.name,
          description: input.description !== undefined ? input.description : current.description,
          roleIds: input.roleIds !== undefined ? asRoleIdList(input.roleIds) : current.roles.map((r) => r.roleId),
          isEnabled: input.isEnabled ?? current.isEnabled,
          expiresAt: input.expiresAt !== undefined ? (input.expiresAt ? new Date(input.expiresAt) : null) : current.expiresAt,
        }),
        input.changeReason,
      );
    },

    /** Deletes the key; returns what it was (read under the same lock). */
    async remove(actor: Actor, id: string, reason: string | undefined, ifMatch?: string): Promise<ApiKeyView> {
      const view = await prisma.$transaction(async (tx) => {
        await versioned(tx);
        const current = await lockKey(tx, id);
        if (!matchesIfMatch(ifMatch, etagOf(current))) throw new AppError('PRECONDITION_FAILED');
        guard(actor, effectivePermissions(current.roles.map((r) => r.role.permissions)), 'delete this key');
        const before = toView(current);
        await tx.apiKey.delete({ where: { id } });
        await writeHistory(tx, id, 'delete', actor, reason, before);
        await announce(tx, id, 'delete');
        return before;
      });
      changed(id, 'delete');
      return view;
    },

    async roles() {
      const roles = await prisma.role.findMany({ orderBy: { id: 'asc' } });
      return roles.map((r) => ({ id: r.id, name: r.name, builtIn: r.builtIn, permissions: r.permissions }));
    },
  };
}

export type ApiKeyService = ReturnType<typeof createApiKeyService>;
