// Authenticates a presented key. Order of checks: format → verified-key cache → prefix lookup →
// argon2 (bounded) → enabled → expiry. Malformed, unknown and wrong-secret keys are
// indistinguishable to the caller; disabled and expired are told apart only after the secret
// verified. Garbage never reaches argon2.
import crypto, { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { AppError, AuthError, RateLimitedError, type AuthCode } from '../lib/errors.js';
import type { KeyHasher } from './hasher.js';
import { digestKey, hashTag, type CachedKey, type KeyCache } from './key-cache.js';
import { isWellFormedKey, keyPrefixOf } from './key-format.js';
import { SuspectRefused, type Lane, type VerificationQueue } from './verification-queue.js';
import type { Principal } from './principal.js';
import { graceRunning, toPrincipal, type AuthKey, type KeyStore } from '../store/api-keys.js';

export type { Principal } from './principal.js';

// crypto.hash (one-shot, Node ≥ 20.12) costs a fraction of a Hash object; every uncached attempt compares one digest.
const oneShotHash = (crypto as unknown as { hash?: (alg: string, data: string, enc: 'buffer') => Buffer }).hash;

/**
 * A key as the cache keeps it, from a fresh read: who it is, its state, the hash its secret
 * verified against — the key's own, or (`previous`) the one a rotation replaced, which the entry
 * then stops standing for when its grace period ends.
 */
function cachedFrom(key: AuthKey, at: number, previous = false): CachedKey {
  const principal = toPrincipal(key);
  if (previous) principal.secretExpiresAt = key.previousKeyExpiresAt!.getTime();
  return {
    principal,
    ...(previous ? { secretPrefix: key.previousKeyPrefix! } : {}),
    hashTag: hashTag(previous ? key.previousHash! : key.hash),
    version: key.version,
    isEnabled: key.isEnabled,
    expiresAt: key.expiresAt?.getTime() ?? null,
    checkedAt: at,
    stale: false,
  };
}

/** The client's address, or how to get it: behind a trusted proxy reading it parses X-Forwarded-For, so a cache hit reads it only when lastUsedAt records it. */
export type ClientIp = string | (() => string);

/** The address an allowlist judges: the client's (undefined: the same as ClientIp), or null when none was given (verify without clientIp). */
export type AllowlistAddress = ClientIp | null | undefined;

const addressOf = (ip: ClientIp | null): string | null => (typeof ip === 'function' ? ip() : ip);

/** What the caller of `authenticate` decides about argon2 work (request-auth.ts: the failure budgets). */
export interface VerificationGuard {
  /** Before the prefix lookup: true refuses the attempt at once, unverified. */
  refusesUnread(prefix: string): boolean;
  /** Just before argon2: the lane to verify in, or a throw; `settle` follows with whether the secret matched. */
  reserve(prefix: string): Promise<{ lane: Lane; settle(matched: boolean): Promise<void> | void }>;
}

/**
 * A wrong-secret answer given without argon2 (the prefix's budget is spent, or its lane is full):
 * the caller sees API_KEY_INVALID like any wrong secret; the security event says RATE_LIMITED.
 */
export function refusedUnverified(prefix: string): AuthError {
  const err = new AuthError('API_KEY_INVALID');
  err.matchedPrefix = prefix;
  err.eventReason = 'RATE_LIMITED';
  return err;
}

/** Whether the replaced secret of `key` is accepted at `at`: its grace period runs (and its hash is there). */
const inGrace = (key: AuthKey, at: number) => key.previousHash !== null && graceRunning(key, at);

/**
 * A key used from outside its allowlist: its secret verified (so this says nothing to a caller
 * without it), and verify may say whose it is.
 */
export class AddressRefusedError extends AppError {
  constructor(
    readonly principal: Principal,
    address: string | null,
    /** The presented secret's prefix (a replaced secret's is not the key's): for security events only. */
    readonly matchedPrefix: string,
  ) {
    super(
      'IP_NOT_ALLOWED',
      address
        ? `This API key may not be used from ${address}: it is limited to the address blocks in its allowedCidrs.`
        : 'This API key is limited to the address blocks in its allowedCidrs, and no client address was given (send clientIp).',
    );
  }
}

/** What a reported secret turned out to be (POST /apikeys/revoke). */
export type Identified =
  | { kind: 'found'; keyId: string; hashTag: string }
  /** Malformed, an unknown prefix, or a deleted key's. */
  | { kind: 'unknown' }
  /** A wrong secret for a real prefix (a security event). */
  | { kind: 'wrong'; prefix: string }
  /** Not verified now (argon2 lanes full, or the server overloaded): try again later. */
  | { kind: 'busy' };

/** A disabled or expired key: its secret verified, so the verify endpoint may say whose it is. */
export class RefusedKeyError extends AuthError {
  constructor(
    code: 'API_KEY_DISABLED' | 'API_KEY_EXPIRED',
    readonly principal: Principal,
  ) {
    super(code);
    this.matchedPrefix = principal.keyPrefix;
  }
}

function copyOf(err: AuthError): AuthError {
  const copy = new AuthError(err.authCode, err.message);
  copy.matchedPrefix = err.matchedPrefix;
  copy.eventReason = err.eventReason;
  return copy;
}

export function createAuthenticator(deps: {
  keys: KeyStore;
  hasher: KeyHasher;
  /** Told of every admitted use (lastUsedAt, batched elsewhere). */
  lastUsed: { touch(keyId: string, ip: ClientIp): void };
  cache: KeyCache;
  verifications: VerificationQueue;
  log: FastifyBaseLogger;
  /** JIM_INFRASTRUCTURE_API_KEY, when configured: recognised without argon2 (by digest). */
  infrastructureKey?: string | null;
  now?: () => number;
}) {
  const { keys, hasher, lastUsed, cache, verifications, log } = deps;
  const now = deps.now ?? Date.now;
  const sha256 = (s: string) => (oneShotHash ? oneShotHash('sha256', s, 'buffer') : createHash('sha256').update(s).digest());
  const infrastructureDigest = deps.infrastructureKey ? sha256(deps.infrastructureKey) : null;

  const rehashing = new Set<string>();
  /**
   * Rehash with the configured parameters after a successful use; never blocks the request,
   * one per key at a time, and only when an argon2 slot is free (otherwise a later use does it).
   */
  function rehashLater(id: string, oldHash: string, secret: string) {
    if (rehashing.has(id)) return;
    rehashing.add(id);
    void verifications
      .tryRun(() => hasher.hash(secret))
      .then(async (hash) => {
        // This instance's entries follow the new hash at once; others re-check theirs once, on their next re-read.
        if (hash !== undefined && (await keys.replaceHash(id, oldHash, hash))) cache.retag(id, hashTag(oldHash), hashTag(hash));
      })
      .catch((err) => log.warn({ err, keyId: id }, 'rehash failed'))
      .finally(() => rehashing.delete(id));
  }

  function refuse(code: AuthCode, prefix: string): never {
    const err = new AuthError(code);
    err.matchedPrefix = prefix;
    throw err;
  }

  /**
   * The verdict on a verified (or cached) key: a replaced secret past its grace period is a wrong
   * secret from then on (its entry goes); then disabled, expired, and the allowlist.
   */
  function admit(digest: string, entry: CachedKey, ip: ClientIp, at: number, allowlistIp: AllowlistAddress): Principal {
    const p = entry.principal;
    if (p.secretExpiresAt !== null && p.secretExpiresAt <= at) {
      cache.forget(digest);
      cache.rememberInvalid(digest, at);
      refuse('API_KEY_INVALID', entry.secretPrefix!);
    }
    if (!entry.isEnabled) throw new RefusedKeyError('API_KEY_DISABLED', p);
    if (entry.expiresAt !== null && entry.expiresAt <= at) throw new RefusedKeyError('API_KEY_EXPIRED', p);
    if (p.allowsAddress !== null) {
      const address = addressOf(allowlistIp === undefined ? ip : allowlistIp);
      if (!p.allowsAddress(address)) throw new AddressRefusedError(p, address, entry.secretPrefix ?? p.keyPrefix);
    }
    lastUsed.touch(p.id, ip);
    return p;
  }

  /** Verifications of a secret against a replaced hash, one per presented key at a time. */
  const reverifying = new Map<string, Promise<boolean>>();

  /**
   * The stored hash is no longer the one this secret verified against: replaced (a rotation, a
   * change behind the server's back) or rehashed by another instance. Only a secret that did
   * verify for this key gets here, so it is checked against that one row directly — no prefix
   * lookup, no failure budget (it is no guess) — once per secret however many requests wait.
   */
  function stillMatches(digest: string, presented: string, hash: string): Promise<boolean> {
    let pending = reverifying.get(digest);
    if (!pending) {
      pending = verifications.run(() => hasher.verify(hash, presented)).finally(() => reverifying.delete(digest));
      reverifying.set(digest, pending);
    }
    return pending;
  }

  /**
   * Brings a stale or aged entry up to date. Aged entries first compare the row version (the
   * cheap case); a changed or stale entry is re-read (no argon2, unless its hash was replaced).
   * Says 'deleted' when the key no longer exists, 'replaced' when the secret no longer belongs to it.
   */
  async function refresh(digest: string, entry: CachedKey, at: number, presented: string): Promise<CachedKey | 'deleted' | 'replaced'> {
    const epoch = cache.epoch;
    if (!entry.stale) {
      const version = await keys.versionOf(entry.principal.id);
      if (version === entry.version) {
        if (!cache.changedSince(epoch, entry.principal.id)) entry.checkedAt = at;
        return entry;
      }
      if (version === null) {
        cache.forget(digest);
        return 'deleted';
      }
    }
    const row = await keys.forAuth(entry.principal.id);
    if (!row) {
      cache.forget(digest);
      return 'deleted';
    }
    // The secret is the key's own, or the one a rotation replaced while its grace runs; any
    // other hash (rehashed elsewhere, replaced behind our back) is checked against the secret.
    let next = cachedFrom(row, at);
    if (next.hashTag !== entry.hashTag) {
      if (inGrace(row, at) && hashTag(row.previousHash!) === entry.hashTag) next = cachedFrom(row, at, true);
      else if (!(await stillMatches(digest, presented, row.hash))) {
        cache.forget(digest);
        cache.rememberInvalid(digest, now());
        return 'replaced';
      }
    }
    // Another change may have landed while we read: then leave the entry stale for the next use.
    cache.set(digest, next, epoch);
    return next;
  }

  /** First uses being verified, by digest: concurrent requests with one secret wait for one answer. */
  const firstUses = new Map<string, Promise<CachedKey>>();

  async function verifyFirstUse(digest: string, presented: string, prefix: string, guard?: VerificationGuard, rehash = true): Promise<CachedKey> {
    const epoch = cache.epoch;
    const at = now();
    const candidates = await keys.byPrefix(prefix, new Date(at));
    if (!candidates.length) throw new AuthError('API_KEY_INVALID'); // unknown prefix: no argon2
    const reservation = guard ? await guard.reserve(prefix) : undefined;
    let match: (typeof candidates)[number] | undefined;
    let viaPrevious = false;
    let verified = false;
    try {
      match = await verifications.run(async () => {
        verified = true;
        for (const row of candidates) {
          if (row.keyPrefix === prefix && (await hasher.verify(row.hash, presented))) return row;
          if (row.previousKeyPrefix === prefix && inGrace(row, at) && (await hasher.verify(row.previousHash!, presented))) {
            viaPrevious = true;
            return row;
          }
        }
        return undefined;
      }, reservation?.lane);
    } catch (err) {
      if (err instanceof SuspectRefused) throw refusedUnverified(prefix);
      throw err;
    } finally {
      // A refusal before argon2 ran (overload) is no wrong secret.
      await reservation?.settle(match !== undefined || !verified);
    }
    if (!match) {
      cache.rememberInvalid(digest, now());
      refuse('API_KEY_INVALID', prefix);
    }
    if (rehash && !viaPrevious && hasher.needsRehash(match.hash)) rehashLater(match.id, match.hash, presented);
    const entry = cachedFrom(match, at, viaPrevious);
    // Disabled and expired keys are cached too: hammering with one costs no more argon2.
    cache.set(digest, entry, epoch);
    return entry;
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
     * The common case, synchronously: a fresh cache hit (`digestOf` may remember digests it made). Returns undefined when the full path
     * (stale or aged entry, or no entry) is needed; throws for a malformed, disabled or expired key.
     */
    fromCache(presented: string, ip: ClientIp, digestOf: (key: string) => string = digestKey, allowlistIp?: AllowlistAddress): Principal | undefined {
      if (!isWellFormedKey(presented)) throw new AuthError('API_KEY_INVALID');
      const digest = digestOf(presented);
      const hit = cache.get(digest);
      if (!hit || hit.stale) return undefined;
      const at = now();
      if (at - hit.checkedAt > cache.maxAgeMs || !cache.trusted(at)) return undefined;
      return admit(digest, hit, ip, at, allowlistIp);
    },

    /**
     * Which key a presented secret is, and whether it is the key's own or the one a rotation
     * replaced (by the hash it verified against), without using it: no lastUsedAt, no verdict.
     * The same cache, failure budgets and argon2 bound as `authenticate`. Null when it is no key's.
     */
    async identify(presented: string, guard?: VerificationGuard): Promise<Identified> {
      if (!isWellFormedKey(presented)) return { kind: 'unknown' };
      const digest = digestKey(presented);
      const at = now();
      const prefix = keyPrefixOf(presented);
      const hit = cache.get(digest);
      let entry: CachedKey | 'deleted' | 'replaced';
      try {
        if (hit) entry = await refresh(digest, { ...hit, stale: true }, at, presented);
        else {
          if (cache.isKnownInvalid(digest, at)) return { kind: 'wrong', prefix };
          if (guard?.refusesUnread(prefix)) return { kind: 'busy' };
          // No rehash: it would replace the hash the revocation is about to match.
          entry = await verifyFirstUse(digest, presented, prefix, guard, false);
        }
      } catch (err) {
        if (err instanceof RateLimitedError || (err instanceof AuthError && err.eventReason === 'RATE_LIMITED')) return { kind: 'busy' };
        if (err instanceof AuthError) return err.matchedPrefix ? { kind: 'wrong', prefix } : { kind: 'unknown' };
        if (err instanceof AppError && err.code === 'OVERLOADED') return { kind: 'busy' };
        throw err;
      }
      if (entry === 'deleted') return { kind: 'unknown' };
      if (entry === 'replaced') return { kind: 'wrong', prefix };
      if (entry.principal.secretExpiresAt !== null && entry.principal.secretExpiresAt <= now()) return { kind: 'wrong', prefix };
      return { kind: 'found', keyId: entry.principal.id, hashTag: entry.hashTag };
    },

    /**
     * The full path. `guard`, when given, is the caller's say over argon2 work: `refusesUnread`
     * before the prefix is looked up (a prefix known to be under a spent budget is refused with
     * no database read), `reserve` just before argon2 would run (and only then), with the prefix
     * that matched stored keys — it picks the lane or throws the refusal, and its `settle` is
     * told once the verification is over whether the secret matched (true when argon2 never ran).
     * Concurrent first uses of one secret share one reservation and one verification.
     */
    async authenticate(presented: string, ip: string, guard?: VerificationGuard, allowlistIp?: AllowlistAddress): Promise<Principal> {
      if (!isWellFormedKey(presented)) throw new AuthError('API_KEY_INVALID');
      const digest = digestKey(presented);
      const at = now();
      const hit = cache.get(digest);
      if (hit) {
        const entry = hit.stale || at - hit.checkedAt > cache.maxAgeMs || !cache.trusted(at) ? await refresh(digest, hit, at, presented) : hit;
        if (entry === 'deleted') throw new AuthError('API_KEY_INVALID'); // its prefix matches nothing now
        if (entry === 'replaced') refuse('API_KEY_INVALID', keyPrefixOf(presented)); // a wrong secret for a real prefix
        return admit(digest, entry, ip, at, allowlistIp);
      }
      const prefix = keyPrefixOf(presented);
      if (cache.isKnownInvalid(digest, at)) refuse('API_KEY_INVALID', prefix); // only real prefixes are remembered
      if (guard?.refusesUnread(prefix)) throw refusedUnverified(prefix);
      let pending = firstUses.get(digest);
      if (!pending) {
        pending = verifyFirstUse(digest, presented, prefix, guard).finally(() => firstUses.delete(digest));
        firstUses.set(digest, pending);
      } else {
        // Another request is verifying this very secret: its answer is ours (a refusal, re-thrown
        // as our own) — but its network's spent budget is not ours: then we try under our own.
        pending = pending.catch((err) => {
          if (err instanceof RateLimitedError) return verifyFirstUse(digest, presented, prefix, guard);
          throw err instanceof AuthError ? copyOf(err) : err;
        });
      }
      return admit(digest, await pending, ip, now(), allowlistIp);
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
