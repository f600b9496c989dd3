// The API key lifecycle. Every change runs in one transaction with its history row and its
// notification; the row is locked first, so concurrent changes of one key apply one after the
// other. The keys' SQL lives in store/api-keys.ts, the rules of who may do what in
// escalation-guard.ts.
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { KeyHasher } from '../auth/hasher.js';
import { hashTag } from '../auth/key-cache.js';
import { generateKey, keyPrefixOf } from '../auth/key-format.js';
import { covers, effectivePermissions, listPermissions } from '../auth/permissions.js';
import { encodeKeyEvent, KEY_CHANNEL, type KeyEventOp } from '../db/key-events.js';
import { nextChangeSeq } from '../db/peer-acks.js';
import type { Prisma, PrismaClient } from '../generated/prisma/client.js';
import { AppError, ValidationError } from '../lib/errors.js';
import { asCidrList, asRoleIdList, type ApiKeyView, type CreateInput, type PatchInput, type ReplaceInput, type RotateInput } from '../schemas/api-keys.js';
import { createKeyStore, graceRunning, markOwnWrite, permissionsOf, rateLimitOf, snapshotOf, toView, type KeyStore, type KeyWrite, type StoredKey, type Tx } from '../store/api-keys.js';
import { createCursorKeyLoader } from './cursor-key.js';
import { disabledByAfter, requireCovered, requireExpiryWithin, requireMayEnable, SYSTEM_ACTOR, type Actor } from './escalation-guard.js';
import { matchesIfMatch } from './etag.js';
import { pageOf, wildcardToLike } from './paging.js';
import { EVENT_OF_OPERATION, eventActor, type KeyEventType } from '../webhooks/events.js';
import { recordEvent } from '../webhooks/outbox.js';

export { SYSTEM_ACTOR, type Actor };

/** Who a leaked-key report's changes are recorded as: no key of theirs, only the secret they found. */
export const REVOCATION_ACTOR: Actor = { type: 'revocationReport', id: null, name: 'leaked-key report', permissions: new Set(), expiresAt: null };

export const etagOf = (key: { version: number }) => `"${key.version}"`;


export interface ListOptions {
  name?: string;
  isEnabled?: boolean;
  /** Only keys not used since then (or never). */
  unusedSince?: Date;
  limit?: number;
  cursor?: string;
}

/** What a change sets: everything but the parts the guard and the store add. */
type Change = Omit<KeyWrite, 'disabledBy'>;

export function createApiKeyService(deps: {
  prisma: PrismaClient;
  store?: KeyStore;
  hasher: KeyHasher;
  log: FastifyBaseLogger;
  /** Called after a change to a key commits, before the caller replies (local cache). */
  onChanged?: (keyId: string, op: KeyEventOp, seq?: number) => Promise<void> | void;
  /** Names this process in its notifications, so it can skip its own echoes. */
  instanceId?: string;
  cursorKey?: () => Promise<Buffer>;
  now?: () => Date;
}) {
  const { prisma, hasher } = deps;
  const store = deps.store ?? createKeyStore(prisma);
  const now = deps.now ?? (() => new Date());
  const changed = (id: string, op: KeyEventOp, seq?: number) => deps.onChanged?.(id, op, seq);
  const instanceId = deps.instanceId ?? randomUUID();
  const signingKey = deps.cursorKey ?? createCursorKeyLoader(prisma);

  /**
   * Tells every instance, on commit: PostgreSQL delivers a NOTIFY only if its transaction commits.
   * Returns the change's seq, which the others confirm once applied (none for a create: no cache
   * holds a key that did not exist).
   */
  async function announce(tx: Tx, keyId: string, op: KeyEventOp): Promise<number | undefined> {
    const seq = op === 'create' ? undefined : nextChangeSeq();
    await tx.$executeRaw`SELECT pg_notify(${KEY_CHANNEL}, ${encodeKeyEvent({ instanceId, op, keyId, seq })})`;
    return seq;
  }

  /** The effective permissions of `ids`, which must all be roles; unknown ones are named, as JIM words it. */
  async function requireRoles(tx: Tx, ids: number[]) {
    // FOR KEY SHARE: a role being deleted meanwhile waits for this key's change (and then sees
    // it held), or this change waits for the delete (and then finds no role).
    const found = ids.length ? await tx.$queryRaw<Array<{ id: number; permissions: string[] }>>`SELECT id, permissions FROM roles WHERE id = ANY(${ids}::int[]) FOR KEY SHARE` : [];
    const missing = ids.filter((id) => !found.some((r) => r.id === id));
    if (missing.length) {
      throw new ValidationError(
        [{ field: 'roleIds', message: `names ${missing.length > 1 ? 'roles that do' : 'a role that does'} not exist: ${missing.join(', ')} (GET /api/v1/roles lists them)` }],
        `One or more role IDs are invalid: ${missing.join(', ')}.`,
      );
    }
    return effectivePermissions(found.map((r) => r.permissions));
  }

  /**
   * History versions are their own 1, 2, 3… per key (the row version may also move for changes
   * made outside keyward). The key's row is locked, so this read-then-insert cannot race. The
   * change's webhook event goes into the outbox in the same transaction.
   */
  async function writeHistory(
    tx: Tx,
    keyId: string,
    operation: string,
    actor: Actor,
    reason: string | null | undefined,
    view: ApiKeyView,
    event: { type?: KeyEventType; extra?: Record<string, unknown> } = {},
  ) {
    const last = await tx.apiKeyChange.aggregate({ where: { apiKeyId: keyId }, _max: { version: true } });
    const version = (last._max.version ?? 0) + 1;
    await recordEvent(tx, event.type ?? EVENT_OF_OPERATION[operation], now(), { key: view, actor: eventActor(actor), changeReason: reason ?? null, historyVersion: version, ...event.extra });
    await tx.apiKeyChange.create({
      data: {
        apiKeyId: keyId,
        version,
        operation,
        actorType: actor.type,
        actorId: actor.id,
        actorName: actor.name,
        changeReason: reason ?? null,
        snapshot: snapshotOf(view) as Prisma.InputJsonObject,
      },
    });
  }

  async function locked(tx: Tx, id: string, ifMatch: string | undefined): Promise<StoredKey> {
    const current = await store.lock(tx, id);
    if (!current) throw new AppError('API_KEY_NOT_FOUND');
    if (!matchesIfMatch(ifMatch, etagOf(current))) throw new AppError('PRECONDITION_FAILED');
    return current;
  }

  async function applyUpdate(actor: Actor, id: string, ifMatch: string | undefined, next: (current: StoredKey) => Change, reason: string | null | undefined) {
    const result = await prisma.$transaction(async (tx) => {
      await markOwnWrite(tx);
      const current = await locked(tx, id, ifMatch);
      const currentPerms = permissionsOf(current);
      requireCovered(actor, currentPerms, 'change this key');
      const target = next(current);
      const targetPerms = await requireRoles(tx, target.roleIds);
      requireCovered(actor, targetPerms, 'give this key those roles');
      const widens = !covers(currentPerms, targetPerms) || (!current.isEnabled && target.isEnabled);
      requireExpiryWithin(actor, current.expiresAt, target.expiresAt, widens);
      requireMayEnable(actor, current, target.isEnabled);
      const at = now();
      const row = await store.update(tx, id, {
        ...target,
        disabledBy: disabledByAfter(actor, current.isEnabled, current.disabledBy, target.isEnabled),
        version: current.version + 1,
        at,
        ...(!current.isEnabled && target.isEnabled ? { enabledAt: at } : {}),
      });
      const view = toView(row, now().getTime());
      await writeHistory(tx, id, 'update', actor, reason, view);
      const seq = await announce(tx, id, 'update');
      return { key: view, etag: etagOf(row), seq };
    });
    await changed(id, 'update', result.seq);
    return { key: result.key, etag: result.etag };
  }

  const expiry = (v: string | null | undefined) => (v ? new Date(v) : null);

  /** Disables the locked key on nobody's behalf: whoever may change it may enable it again (apikeys.write, and what it holds). */
  const disable = (tx: Tx, current: StoredKey, at: Date) =>
    store.update(tx, current.id, {
      name: current.name,
      description: current.description,
      roleIds: current.roles.map((r) => r.id),
      isEnabled: false,
      disabledBy: listPermissions(new Set([...permissionsOf(current), 'apikeys.write'])),
      expiresAt: current.expiresAt,
      metadata: current.metadata,
      allowedCidrs: current.allowedCidrs,
      rateLimit: rateLimitOf(current),
      version: current.version + 1,
      at,
    });

  /** The fields keyward adds beyond JIM's: each absent one stays as it is (PUT and PATCH alike). */
  const beyondJim = (input: PatchInput, current: StoredKey): Pick<Change, 'metadata' | 'allowedCidrs' | 'rateLimit'> => ({
    metadata: input.metadata !== undefined ? (input.metadata ?? {}) : current.metadata,
    allowedCidrs: input.allowedCidrs !== undefined ? asCidrList(input.allowedCidrs) : current.allowedCidrs,
    rateLimit: input.rateLimit !== undefined ? input.rateLimit : rateLimitOf(current),
  });

  return {
    async list(opts: ListOptions): Promise<{ items: ApiKeyView[]; next: string | null }> {
      const likePattern = opts.name === undefined ? undefined : wildcardToLike(opts.name);
      const { items, next } = await pageOf('keys', opts, {
        signingKey,
        fetch: (after, take) => store.list({ likePattern, isEnabled: opts.isEnabled, unusedSince: opts.unusedSince, after: after && { name: after[0], id: after[1] }, take }),
        positionOf: (row) => [row.position.name, row.position.id],
      });
      return { items: items.map((r) => r.view), next };
    },

    async get(id: string) {
      const key = await store.find(id);
      if (!key) throw new AppError('API_KEY_NOT_FOUND');
      return { key: toView(key, now().getTime()), etag: etagOf(key) };
    },

    async create(actor: Actor, input: CreateInput, options: { secret?: string; isInfrastructureKey?: boolean; tx?: Tx; at?: Date } = {}) {
      const at = options.at ?? now();
      if (input.expiresAt && new Date(input.expiresAt).getTime() <= at.getTime()) {
        throw new ValidationError([{ field: 'expiresAt', message: 'must be in the future' }]);
      }
      const secret = options.secret ?? generateKey();
      const hash = await hasher.hash(secret); // before the transaction: argon2 is slow
      const roleIds = input.roleIds ?? [];
      const isEnabled = input.isEnabled ?? true;
      const inTx = async (tx: Tx) => {
        await markOwnWrite(tx);
        requireCovered(actor, await requireRoles(tx, roleIds), 'create a key with those roles');
        requireExpiryWithin(actor, undefined, expiry(input.expiresAt));
        const row = await store.insert(tx, {
          id: randomUUID(),
          name: input.name,
          description: input.description ?? null,
          keyPrefix: keyPrefixOf(secret),
          hash,
          roleIds,
          isEnabled,
          disabledBy: disabledByAfter(actor, true, [], isEnabled),
          isInfrastructureKey: options.isInfrastructureKey ?? false,
          expiresAt: expiry(input.expiresAt),
          metadata: input.metadata ?? {},
          allowedCidrs: input.allowedCidrs != null ? asCidrList(input.allowedCidrs) : [],
          rateLimit: input.rateLimit ?? null,
          at,
        });
        const view = toView(row, at.getTime());
        await writeHistory(tx, row.id, 'create', actor, input.changeReason, view);
        await announce(tx, row.id, 'create'); // other instances drop negative-cache entries
        return { key: view, secret, etag: etagOf(row) };
      };
      if (options.tx) return inTx(options.tx); // the caller's transaction; it announces on commit
      const created = await prisma.$transaction(inTx);
      await changed(created.key.id, 'create');
      return created;
    },

    replace(actor: Actor, id: string, input: ReplaceInput, ifMatch?: string) {
      return applyUpdate(
        actor,
        id,
        ifMatch,
        (current) => ({
          name: input.name,
          description: input.description ?? null,
          roleIds: asRoleIdList(input.roleIds),
          isEnabled: input.isEnabled,
          expiresAt: expiry(input.expiresAt),
          // Not JIM's: Set-JIMApiKey never sends them, so its PUT must not erase them (README "Fields beyond JIM's").
          ...beyondJim(input, current),
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
          roleIds: input.roleIds !== undefined ? asRoleIdList(input.roleIds) : current.roles.map((r) => r.id),
          isEnabled: input.isEnabled ?? current.isEnabled,
          expiresAt: input.expiresAt !== undefined ? expiry(input.expiresAt) : current.expiresAt,
          ...beyondJim(input, current),
        }),
        input.changeReason,
      );
    },

    /**
     * A new secret for the same key. The replaced one keeps working for `gracePeriodSeconds`
     * (never past the key's own expiry); a rotation during a grace period ends that one at once.
     */
    async rotate(actor: Actor, id: string, input: RotateInput, ifMatch?: string) {
      const secret = generateKey();
      const hash = await hasher.hash(secret); // before the transaction: argon2 is slow
      const result = await prisma.$transaction(async (tx) => {
        await markOwnWrite(tx);
        const current = await locked(tx, id, ifMatch);
        requireCovered(actor, permissionsOf(current), 'rotate this key');
        // A new secret is a new credential: it may not outlive the caller's own key, as a created one may not.
        requireExpiryWithin(actor, undefined, current.expiresAt);
        if (actor.replacedSecret && actor.id === id) {
          throw new AppError('FORBIDDEN', 'This secret was replaced by a rotation and works only until its grace period ends: it cannot rotate its key again. Use the key\'s new secret.');
        }
        const at = now();
        if (!current.isEnabled) throw new AppError('API_KEY_NOT_ROTATABLE', 'The key is disabled: enable it first, or create a new key.');
        if (current.expiresAt && current.expiresAt.getTime() <= at.getTime()) {
          throw new AppError('API_KEY_NOT_ROTATABLE', 'The key has expired: extend its expiresAt first, or create a new key.');
        }
        const graceMs = (input.gracePeriodSeconds ?? 0) * 1000;
        const graceEnd = Math.min(at.getTime() + graceMs, current.expiresAt?.getTime() ?? Infinity);
        const previous = graceMs > 0 ? { keyPrefix: current.keyPrefix, hash: current.hash, until: new Date(graceEnd) } : null;
        const row = await store.rotate(tx, id, { keyPrefix: keyPrefixOf(secret), hash, previous, version: current.version + 1, at });
        const view = toView(row, at.getTime());
        await writeHistory(tx, id, 'rotate', actor, input.changeReason, view);
        const seq = await announce(tx, id, 'update');
        return { key: view, etag: etagOf(row), seq };
      });
      await changed(id, 'update', result.seq);
      return { key: result.key, secret, etag: result.etag };
    },

    /**
     * A leaked-key report: the secret of `keyId` verified. The key's own secret disables the key;
     * the secret a rotation replaced (`previous`) ends its grace period, leaving the new one
     * working. Nothing happens to a key already disabled (or a grace already over). Whether it
     * changed anything is for the log alone: the reporter is never told.
     */
    async revokeReported(keyId: string, secret: string, verifiedTag: string, source: string | undefined): Promise<boolean> {
      const reason = `Reported as leaked${source ? ` (found at: ${source})` : ''}`;
      const done = await prisma.$transaction(async (tx) => {
        await markOwnWrite(tx);
        const current = await store.lock(tx, keyId);
        if (!current) return null;
        const at = now();
        const inGrace = current.previousHash !== null && graceRunning(current, at.getTime());
        // Which of the key's secrets it is: by the hash it verified against, or — when that hash was
        // replaced meanwhile (a rehash on another instance) — by argon2, under the lock.
        let which: 'current' | 'previous' | null = hashTag(current.hash) === verifiedTag ? 'current' : inGrace && hashTag(current.previousHash!) === verifiedTag ? 'previous' : null;
        if (which === null) {
          if (await hasher.verify(current.hash, secret)) which = 'current';
          else if (inGrace && (await hasher.verify(current.previousHash!, secret))) which = 'previous';
          else return null; // replaced meanwhile: that secret is dead already
        }
        let row: StoredKey;
        if (which === 'current') {
          if (!current.isEnabled) return null;
          row = await disable(tx, current, at);
        } else {
          row = await store.endGrace(tx, keyId, { version: current.version + 1, at });
        }
        await writeHistory(tx, keyId, 'revoke', REVOCATION_ACTOR, reason, toView(row, at.getTime()));
        const seq = await announce(tx, keyId, 'update');
        return { seq };
      });
      if (!done) return false;
      await changed(keyId, 'update', done.seq);
      return true;
    },

    /**
     * The idle-key policy: disables the key if, under its lock, it is still enabled, not the
     * infrastructure key, and unused (or, never used, created) before `cutoff`. Returns whether it did.
     */
    async disableIdle(keyId: string, policy: { days: number; cutoff: Date }): Promise<boolean> {
      const done = await prisma.$transaction(async (tx) => {
        await markOwnWrite(tx);
        const current = await store.lock(tx, keyId);
        if (!current || !current.isEnabled || current.isInfrastructureKey) return null;
        // Idle since its last use, its creation, or its last re-enabling, whichever is latest.
        const since = Math.max(current.createdAt.getTime(), current.lastUsedAt?.getTime() ?? 0, current.enabledAt?.getTime() ?? 0);
        if (since > policy.cutoff.getTime()) return null;
        const at = now();
        const row = await disable(tx, current, at);
        const reason = `Disabled by the idle-key policy (IDLE_KEY_DISABLE_DAYS=${policy.days}): ${current.lastUsedAt ? `last used ${current.lastUsedAt.toISOString()}` : `never used since its creation on ${current.createdAt.toISOString()}`}`;
        await writeHistory(tx, keyId, 'update', SYSTEM_ACTOR, reason, toView(row, at.getTime()), {
          type: 'apikey.disabled_idle',
          extra: { idleDays: policy.days, lastUsedAt: current.lastUsedAt?.toISOString() ?? null },
        });
        return { seq: await announce(tx, keyId, 'update') };
      });
      if (!done) return false;
      await changed(keyId, 'update', done.seq);
      return true;
    },

    /** Deletes the key; returns what it was (read under the same lock). */
    async remove(actor: Actor, id: string, reason: string | undefined, ifMatch?: string): Promise<ApiKeyView> {
      const view = await prisma.$transaction(async (tx) => {
        await markOwnWrite(tx);
        const current = await locked(tx, id, ifMatch);
        requireCovered(actor, permissionsOf(current), 'delete this key');
        const before = toView(current, now().getTime());
        await store.delete(tx, id);
        await writeHistory(tx, id, 'delete', actor, reason, before);
        const seq = await announce(tx, id, 'delete');
        return { before, seq };
      });
      await changed(id, 'delete', view.seq);
      return view.before;
    },

  };
}

export type ApiKeyService = ReturnType<typeof createApiKeyService>;
