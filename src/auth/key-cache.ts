// The verified-key cache: after a key verifies once, later requests with it are answered from
// memory — no argon2, no database read. Keyed by a SHA-256 digest of the presented key (never
// the key itself). Bounded (LRU). An entry is marked stale the moment its key changes (locally,
// or through LISTEN/NOTIFY from another instance) and dropped when the key is deleted; an entry
// older than `maxAgeMs` is revalidated by one read of the key's row version. Each entry knows
// which stored hash its secret verified against: when a re-read finds another hash (the secret
// was replaced, whoever did it), the entry goes and the secret is verified afresh.
import crypto from 'node:crypto';
import type { Principal } from './principal.js';

export interface CachedKey {
  principal: Principal;
  /** For a rotation's replaced secret (principal.secretExpiresAt set): its prefix, which is not the key's. */
  secretPrefix?: string;
  /** A fingerprint of the stored hash the presented secret verified against (hashTag()). */
  hashTag: string;
  version: number;
  isEnabled: boolean;
  expiresAt: number | null;
  /** When the row version was last confirmed against the database. */
  checkedAt: number;
  /** The key changed since this was read: re-read its row (never argon2) before using it. */
  stale: boolean;
}

// crypto.hash (one-shot, Node ≥ 20.12) avoids a Hash object per request on the hot path.
const oneShot = (crypto as unknown as { hash?: (alg: string, data: string, enc: string) => string }).hash;
// Salted per process: a heap dump's digests cannot be brute-forced offline like a plain SHA-256
// of a weak, operator-chosen key could.
const SALT = crypto.randomBytes(32).toString('base64');

/** A short fingerprint of a stored argon2 hash: enough to notice it was replaced. */
export function hashTag(hash: string): string {
  return crypto.createHash('sha256').update(hash).digest('base64url').slice(0, 22);
}

export function digestKey(key: string): string {
  const data = SALT + key;
  return oneShot ? oneShot('sha256', data, 'base64url') : crypto.createHash('sha256').update(data).digest('base64url');
}

/**
 * A Map kept in (nearly) least-recently-used order. A hit moves its entry to the end only when
 * it has drifted into the older half — a hot key costs one Map read per request, not a delete
 * and a set — so what is evicted first is always among the least recently used.
 */
class Lru<V> {
  private map = new Map<string, { value: V; seq: number }>();
  private seq = 0;
  constructor(private readonly max: number) {}
  get(k: string): V | undefined {
    const slot = this.map.get(k);
    if (slot === undefined) return undefined;
    if (this.seq - slot.seq >= this.max / 2) {
      this.map.delete(k);
      slot.seq = ++this.seq;
      this.map.set(k, slot);
    }
    return slot.value;
  }
  /** Returns the evicted entry, if one had to go. */
  set(k: string, v: V): [string, V] | undefined {
    this.map.delete(k);
    this.map.set(k, { value: v, seq: ++this.seq });
    if (this.map.size > this.max) {
      const [oldest, slot] = this.map.entries().next().value as [string, { value: V }];
      this.map.delete(oldest);
      return [oldest, slot.value];
    }
    return undefined;
  }
  delete(k: string) {
    return this.map.delete(k);
  }
  clear() {
    this.map.clear();
  }
  get size() {
    return this.map.size;
  }
  keys() {
    return this.map.keys();
  }
}

export function createKeyCache(opts: {
  maxEntries: number;
  maxAgeMs: number;
  negativeMaxEntries: number;
  negativeTtlMs: number;
  /** Until when (Date.now() ms) a hit may be used without a database read: the listener's lease. Unset: always. */
  trustedUntil?: () => number;
}) {
  const trustedUntil = opts.trustedUntil ?? (() => Infinity);
  const entries = new Lru<CachedKey>(opts.maxEntries);
  const byKeyId = new Map<string, Set<string>>(); // key id → digests cached for it
  const negative = new Lru<number>(opts.negativeMaxEntries); // digest → expiry time
  /** False while cross-instance invalidation is not guaranteed (listener down): no filling. */
  let fillable = false;
  /**
   * Bumped by every invalidation, which is also remembered (bounded) with its key id. A
   * verification that read a key before an invalidation of that key must not cache what it
   * read: the change it raced with has already been announced.
   */
  let epoch = 0;
  const RECENT = 4096;
  const recent: Array<string | null> = []; // recent[i] = key id invalidated at epoch (epoch - len + 1 + i); null = everything

  function bump(keyId: string | null) {
    epoch++;
    recent.push(keyId);
    if (recent.length > RECENT) recent.shift();
  }

  function invalidatedSince(readEpoch: number, keyId: string): boolean {
    const missed = epoch - readEpoch;
    if (missed <= 0) return false;
    if (missed > recent.length) return true; // too long ago to tell: be safe
    for (let i = recent.length - missed; i < recent.length; i++) {
      if (recent[i] === null || recent[i] === keyId) return true;
    }
    return false;
  }

  function unindex(digest: string, entry: CachedKey) {
    const set = byKeyId.get(entry.principal.id);
    set?.delete(digest);
    if (set && !set.size) byKeyId.delete(entry.principal.id);
  }

  function forget(digest: string) {
    const entry = entries.get(digest);
    entries.delete(digest);
    if (entry) unindex(digest, entry);
  }

  return {
    maxAgeMs: opts.maxAgeMs,
    /** Whether a hit at `at` may skip the database (else it is re-checked like an aged entry). */
    trusted(at: number): boolean {
      return at < trustedUntil();
    },
    get(digest: string): CachedKey | undefined {
      return entries.get(digest);
    },
    get epoch() {
      return epoch;
    },
    /** Caches `entry` unless its key was invalidated since `readEpoch` (when it was read). */
    set(digest: string, entry: CachedKey, readEpoch: number) {
      if (!fillable || invalidatedSince(readEpoch, entry.principal.id)) return;
      const evicted = entries.set(digest, entry);
      if (evicted) unindex(evicted[0], evicted[1]);
      let set = byKeyId.get(entry.principal.id);
      if (!set) byKeyId.set(entry.principal.id, (set = new Set()));
      set.add(digest);
    },
    /** A key was created: a secret remembered as wrong might now be right. */
    keyCreated() {
      negative.clear();
    },
    /**
     * The key changed or was deleted. A deleted key's entries go; a changed key's are marked
     * stale, so the next use re-reads its row (one indexed read) instead of verifying the secret
     * again — unless the re-read finds a different hash: then the secret is verified afresh.
     */
    invalidateKey(keyId: string, deleted = false) {
      bump(keyId);
      for (const digest of byKeyId.get(keyId) ?? []) {
        if (deleted) entries.delete(digest);
        else {
          const e = entries.get(digest);
          if (e) e.stale = true;
        }
      }
      if (deleted) byKeyId.delete(keyId);
      negative.clear();
    },
    /** Whether `keyId` was invalidated since `readEpoch` (a read made then may be out of date). */
    changedSince(readEpoch: number, keyId: string) {
      return invalidatedSince(readEpoch, keyId);
    },
    forget,
    /** The key's hash was rehashed (same secret): entries that verified against the old one now stand for the new. */
    retag(keyId: string, from: string, to: string) {
      for (const digest of byKeyId.get(keyId) ?? []) {
        const e = entries.get(digest);
        if (e?.hashTag === from) e.hashTag = to;
      }
    },
    isKnownInvalid(digest: string, now: number): boolean {
      const until = negative.get(digest);
      if (until === undefined) return false;
      if (until > now) return true;
      negative.delete(digest);
      return false;
    },
    rememberInvalid(digest: string, now: number) {
      negative.set(digest, now + opts.negativeTtlMs);
    },
    clear() {
      bump(null);
      entries.clear();
      byKeyId.clear();
      negative.clear();
    },
    setFillable(value: boolean) {
      fillable = value;
      // Either way, reads made before this moment may have missed a notification (made while
      // deaf): bumping the epoch keeps them out of the cache.
      if (!value) this.clear();
      else bump(null);
    },
    get fillable() {
      return fillable;
    },
    stats() {
      return { entries: entries.size, indexed: byKeyId.size, negative: negative.size, fillable };
    },
    /** For tests: everything the cache holds, to prove no plaintext key is in it. */
    dump() {
      return { entries: [...entries.keys()].map((k) => [k, entries.get(k)]), negative: [...negative.keys()] };
    },
  };
}

export type KeyCache = ReturnType<typeof createKeyCache>;
