// Authenticates a presented key. Order of checks: format → verified-key cache → prefix lookup →
// argon2 (bounded) → enabled → expiry. Malformed, unknown and wrong-secret keys are
// indistinguishable to the caller; disabled and expired are told apart only after the secret
// verified. Garbage never reaches argon2.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { PrismaClient } from '../generated/prisma/client.js';
import { AuthError, type AuthCode } from '../lib/errors.js';

export { AuthError } from '../lib/errors.js';
import type { KeyHasher } from './hasher.js';
import { digestKey, hashTag, type CachedKey, type KeyCache } from './key-cache.js';
import { isWellFormedKey, keyPrefixOf } from './key-format.js';
import type { Limiter } from './limiter.js';
import { effectivePermissions, listPermissions } from './permissions.js';
import type { Principal } from './principal.js';

export type { Principal } from './principal.js';

function permissionsOf(rolePermissions: string[][]) {
  const permissions = effectivePermissions(rolePermissions);
  return { permissions, permissionList: listPermissions(permissions) };
}

export function createAuthenticator(deps: {
  prisma: PrismaClient;
  hasher: KeyHasher;
  /** Told of every admitted use (lastUsedAt, batched elsewhere). */
  lastUsed: { touch(keyId: string, ip: string): void };
  cache: KeyCache;
  limiter: Limiter;
  log: FastifyBaseLogger;
  /** JIM_INFRASTRUCTURE_API_KEY, when configured: recognised without argon2 (by digest). */
  infrastructureKey?: string | null;
  now?: () => number;
}) {
  const { prisma, hasher, lastUsed, cache, limiter, log } = deps;
  const now = deps.now ?? Date.now;
  const sha256 = (s: string) => createHash('sha256').update(s).digest();
  const infrastructureDigest = deps.infrastructureKey ? sha256(deps.infrastructureKey) : null;

  const rehashing = new Set<string>();
  /**
   * Rehash with the configured parameters after a successful use; never blocks the request,
   * one per key at a time, and only when an argon2 slot is free (otherwise a later use does it).
   * Marked as keyward's own write, so the version triggers leave the row version alone.
   */
  function rehashLater(id: string, oldHash: string, secret: string) {
    if (rehashing.has(id)) return;
    rehashing.add(id);
    void limiter
      .tryRun(() => hasher.hash(secret))
      .then((hash) =>
        hash === undefined
          ? undefined
          : prisma.$transaction([
              prisma.$executeRaw`SELECT set_config('keyward.versioned', 'on', true)`,
              prisma.apiKey.updateMany({ where: { id, hash: oldHash }, data: { hash } }),
            ]),
      )
      .catch((err) => log.warn({ err, keyId: id }, 'rehash failed'))
      .finally(() => rehashing.delete(id));
  }

  function refuse(code: AuthCode, prefix: string): never {
    const err = new AuthError(code);
    err.matchedPrefix = prefix;
    throw err;
  }

  function admit(entry: CachedKey, ip: string, at: number): Principal {
    if (!entry.isEnabled) refuse('API_KEY_DISABLED', entry.principal.keyPrefix);
    if (entry.expiresAt !== null && entry.expiresAt <= at) refuse('API_KEY_EXPIRED', entry.principal.keyPrefix);
    lastUsed.touch(entry.principal.id, ip);
    return entry.principal;
  }

  /** One indexed read of the key's row and roles: what a changed key now allows. */
  async function readRow(keyId: string) {
    const rows = await prisma.$queryRaw<
      Array<{ version: number; hash: string; name: string; is_enabled: boolean; is_infrastructure_key: boolean; expires_at: Date | null; roles: Array<{ id: number; name: string; permissions: string[] }> }>
    >`SELECT k.version, k.hash, k.name, k.is_enabled, k.is_infrastructure_key, k.expires_at,
             coalesce(json_agg(json_build_object('id', r.id, 'name', r.name, 'permissions', r.permissions) ORDER BY r.id)
                      FILTER (WHERE r.id IS NOT NULL), '[]') AS roles
        FROM api_keys k
        LEFT JOIN api_key_roles kr ON kr.api_key_id = k.id
        LEFT JOIN roles r ON r.id = kr.role_id
       WHERE k.id = ${keyId}::uuid
       GROUP BY k.id`;
    return rows[0];
  }

  /**
   * Brings a stale or aged entry up to date without argon2. Aged entries first compare the row
   * version (the cheap case); a changed or stale entry is re-read. Returns null when the key no
   * longer exists, 'reverify' when its stored hash is no longer the one the secret verified
   * against (replaced, by a rotation or behind the server's back): the entry is gone and the
   * secret must be checked again.
   */
  async function refresh(digest: string, entry: CachedKey, at: number): Promise<CachedKey | null | 'reverify'> {
    const epoch = cache.epoch;
    if (!entry.stale) {
      const v = await prisma.$queryRaw<Array<{ version: number }>>`SELECT version FROM api_keys WHERE id = ${entry.principal.id}::uuid`;
      if (v[0]?.version === entry.version) {
        if (!cache.changedSince(epoch, entry.principal.id)) entry.checkedAt = at;
        return entry;
      }
      if (!v.length) {
        cache.forget(digest);
        return null;
      }
    }
    const row = await readRow(entry.principal.id);
    if (!row) {
      cache.forget(digest);
      return null;
    }
    if (hashTag(row.hash) !== entry.hashTag) {
      cache.forget(digest);
      return 'reverify';
    }
    const next: CachedKey = {
      principal: {
        ...entry.principal,
        name: row.name,
        roles: row.roles.map((r) => ({ id: r.id, name: r.name })),
        ...permissionsOf(row.roles.map((r) => r.permissions)),
        isInfrastructureKey: row.is_infrastructure_key,
        expiresAt: row.expires_at ? new Date(row.expires_at).getTime() : null,
      },
      hashTag: entry.hashTag,
      version: row.version,
      isEnabled: row.is_enabled,
      expiresAt: row.expires_at ? new Date(row.expires_at).getTime() : null,
      checkedAt: at,
      stale: false,
    };
    // Another change may have landed while we read: then leave the entry stale for the next use.
    cache.set(digest, next, epoch);
    return next;
  }

  return {
    /**
     * Whether `presented` is the configured JIM_INFRASTRUCTURE_API_KEY (constant time). Says
     * nothing about whether that key still exists or is valid: argon2 still decides that.
     */
    isInfrastructureSecret(presented: string): boolean {
      return infrastructureDigest !== null && timingSafeEqual(sha256(presented), infrastructureDigest);
    },

    /**
     * The common case, synchronously: a fresh cache hit. Returns undefined when the full path
     * (stale or aged entry, or no entry) is needed; throws for a malformed, disabled or expired key.
     */
    fromCache(presented: string, ip: string): Principal | undefined {
      if (!isWellFormedKey(presented)) throw new AuthError('API_KEY_INVALID');
      const hit = cache.get(digestKey(presented));
      if (!hit || hit.stale) return undefined;
      const at = now();
      if (at - hit.checkedAt > cache.maxAgeMs) return undefined;
      return admit(hit, ip, at);
    },

    /**
     * The full path. `beforeVerify`, when given, runs just before argon2 would (and only then),
     * with the prefix that matched stored keys: the caller's last chance to refuse the work (a
     * spent failure budget). It returns a release function, called once the verification is
     * over with whether the secret matched (true when argon2 never ran, e.g. on overload).
     */
    async authenticate(
      presented: string,
      ip: string,
      beforeVerify?: (prefix: string) => Promise<(matched: boolean) => Promise<void>>,
    ): Promise<Principal> {
      if (!isWellFormedKey(presented)) throw new AuthError('API_KEY_INVALID');
      const digest = digestKey(presented);
      const at = now();
      const hit = cache.get(digest);
      if (hit) {
        const entry = hit.stale || at - hit.checkedAt > cache.maxAgeMs ? await refresh(digest, hit, at) : hit;
        if (!entry) throw new AuthError('API_KEY_INVALID'); // the key was deleted: its prefix matches nothing now
        if (entry !== 'reverify') return admit(entry, ip, at);
        // Its hash was replaced: verify the secret against what is stored now (below).
      }
      if (cache.isKnownInvalid(digest, at)) refuse('API_KEY_INVALID', keyPrefixOf(presented)); // only real prefixes are remembered

      const epoch = cache.epoch;
      const candidates = await prisma.apiKey.findMany({
        where: { keyPrefix: keyPrefixOf(presented) },
        include: { roles: { include: { role: true }, orderBy: { roleId: 'asc' } } },
      });
      if (!candidates.length) throw new AuthError('API_KEY_INVALID'); // unknown prefix: no argon2
      const release = beforeVerify ? await beforeVerify(keyPrefixOf(presented)) : undefined;
      let match: (typeof candidates)[number] | undefined;
      let verified = false;
      try {
        match = await limiter.run(async () => {
          verified = true;
          for (const row of candidates) if (await hasher.verify(row.hash, presented)) return row;
          return undefined;
        });
      } finally {
        // A refusal before argon2 ran (overload) is no wrong secret.
        await release?.(match !== undefined || !verified);
      }
      if (!match) {
        cache.rememberInvalid(digest, now());
        refuse('API_KEY_INVALID', keyPrefixOf(presented));
      }
      if (hasher.needsRehash(match.hash)) rehashLater(match.id, match.hash, presented);
      const entry: CachedKey = {
        hashTag: hashTag(match.hash),
        principal: {
          id: match.id,
          name: match.name,
          keyPrefix: match.keyPrefix,
          roles: match.roles.map((r) => ({ id: r.role.id, name: r.role.name })),
          ...permissionsOf(match.roles.map((r) => r.role.permissions)),
          isInfrastructureKey: match.isInfrastructureKey,
          expiresAt: match.expiresAt?.getTime() ?? null,
        },
        version: match.version,
        isEnabled: match.isEnabled,
        expiresAt: match.expiresAt?.getTime() ?? null,
        checkedAt: at,
        stale: false,
      };
      // Disabled and expired keys are cached too: hammering with one costs no more argon2.
      cache.set(digest, entry, epoch);
      return admit(entry, ip, now());
    },
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;

/**
 * Whether the raw headers (name, value, name, value…) carry `Authorization` or `X-API-Key` more
 * than once. Node keeps only the first `Authorization` and joins repeated `X-API-Key` values, so
 * the parsed headers cannot tell; a proxy that reads the last one would disagree with us about
 * who the caller is.
 */
function repeatsKeyHeader(rawHeaders: readonly string[]): boolean {
  let authorization = 0;
  let apiKey = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name.length === 13 && name.toLowerCase() === 'authorization') authorization++;
    else if (name.length === 9 && name.toLowerCase() === 'x-api-key') apiKey++;
  }
  return authorization > 1 || apiKey > 1;
}

/**
 * The key a request carries: `X-API-Key` (JIM) or `Authorization: Bearer`. Returns null when
 * none is sent; throws when the two disagree or a header is repeated (`rawHeaders`, when given,
 * is checked for repeats the parsed headers hide).
 */
export function presentedKey(headers: Record<string, string | string[] | undefined>, rawHeaders?: readonly string[]): string | null {
  const apiKey = headers['x-api-key'];
  const authorization = headers.authorization;
  if (Array.isArray(apiKey) || Array.isArray(authorization) || (rawHeaders !== undefined && repeatsKeyHeader(rawHeaders))) {
    throw new AuthError('API_KEY_INVALID', 'Send one API key, once.');
  }
  let bearer: string | undefined;
  if (authorization !== undefined) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (!m) {
      if (apiKey === undefined) {
        throw new AuthError('UNAUTHENTICATED', 'Only Bearer authorization is supported: send the API key as X-API-Key or Authorization: Bearer <key>.');
      }
    } else {
      bearer = m[1];
    }
  }
  const key = apiKey?.trim();
  if (key !== undefined && bearer !== undefined && key !== bearer) {
    throw new AuthError('API_KEY_INVALID', 'X-API-Key and Authorization carry different keys.');
  }
  const found = key ?? bearer;
  return found === undefined || found === '' ? null : found;
}
