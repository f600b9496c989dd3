// The verifier: asks keyward's POST /api/v1/apikeys/verify, and keeps what it was told in a cache
// that is used only while keyward's event stream (GET /api/v1/apikeys/verify/events) is live.
//
// Fail closed, never stale: an entry is used or stored only while the stream is live, i.e. after
// its first `reset` (reason "connected") and until it errs, closes, sends another reset, or is
// silent for 2 × heartbeatMs + 1 s. Losing it empties the cache; until it is live again every
// verify asks keyward, and when keyward cannot be asked, verify rejects.
//
// Three kinds of key are cached with care: a key with an address allowlist is judged on every hit
// against the client address (keyward's own rule, so the cache never serves an address keyward
// would refuse); a key with a request limit of its own is never cached (keyward counts every
// verify against it); an entry for a rotated-out secret still in its grace period ends when the
// secret does.
import crypto, { createHash, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { EventSource, type ErrorEvent, type EventSourceFetchInit, type FetchLike } from 'eventsource';
import ipaddr from 'ipaddr.js';
import { KeywardRequestError, KeywardUnavailableError } from './errors.js';
import { assertPermissionNames, grants, missingPermissions } from './permissions.js';

/** Whether `held` grants every one of `required` (no allocation: the hot path of a hit). */
function grantsAll(held: ReadonlySet<string>, required: readonly string[]): boolean {
  for (let i = 0; i < required.length; i++) if (!grants(held, required[i]!)) return false;
  return true;
}

export type VerifyCode = 'VALID' | 'NOT_FOUND' | 'DISABLED' | 'EXPIRED' | 'IP_NOT_ALLOWED' | 'INSUFFICIENT_PERMISSIONS' | 'RATE_LIMITED';

export interface VerifyRole {
  id: number;
  name: string;
}

/** A key's own request limit (keyward counts it across all its instances). */
export interface VerifyRateLimit {
  limit: number;
  windowSeconds: number;
}

/** The verify endpoint's answer (a cache hit has the same shape). */
export interface VerifyResult {
  valid: boolean;
  code: VerifyCode;
  keyId?: string;
  name?: string;
  roles?: readonly VerifyRole[];
  /** The key's effective permissions. */
  permissions?: readonly string[];
  expiresAt?: string | null;
  metadata?: Readonly<Record<string, unknown>>;
  /**
   * The addresses the key may be used from: canonical CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`);
   * null: any address. With the key details (absent from older keyward versions: any address).
   */
  allowedCidrs?: readonly string[] | null;
  /** The key's own request limit; null: keyward's default. With the key details (absent from older keyward versions). */
  rateLimit?: Readonly<VerifyRateLimit> | null;
  /**
   * Only when the presented secret is the key's previous one, still accepted during a rotation's
   * grace period: when it stops being accepted (ISO 8601). After that keyward answers NOT_FOUND.
   */
  secretExpiresAt?: string;
  /** With INSUFFICIENT_PERMISSIONS: the required permissions the key does not hold. */
  missingPermissions?: readonly string[];
  /** With RATE_LIMITED. */
  retryAfterSeconds?: number;
}

export interface VerifyOptions {
  /** Every one must be granted (keyward's rules: `*`, `prefix.*`, exact). */
  requiredPermissions?: readonly string[];
  /**
   * The caller's address, for keyward's rate limits, records and the key's address allowlist. A
   * key with an allowlist is refused (IP_NOT_ALLOWED) when it is missing.
   */
  clientIp?: string;
}

export interface StreamState {
  live: boolean;
  /** Why it changed: "connected", "error: …", "reset: listener-lost", "missed heartbeat", "closed"… */
  reason: string;
}

export interface VerifierOptions {
  /** keyward's base URL, e.g. `http://127.0.0.1:3000` (the `/api/v1/...` paths are appended). */
  url: string;
  /** This service's own keyward API key; it must hold `apikeys.verify`. */
  apiKey: string;
  /** Per verify request, connect to last byte. Default 2,000 ms. */
  timeoutMs?: number;
  /** `false`: no cache and no event stream; every verify asks keyward. Default true. */
  cache?: boolean;
  /** Most entries kept (least recently used go first). Default 10,000. */
  cacheMaxEntries?: number;
  /** Longest an entry is used, from the start of the request that filled it. Default and maximum 300,000 ms. */
  cacheTtlMs?: number;
  /** How long a NOT_FOUND is remembered. Default and maximum 2,000 ms; 0 disables. */
  negativeTtlMs?: number;
  /** Race guard window: a result is not stored if its key was invalidated, or the stream reset, this long before its request started (or any time after). Default and minimum 1,000 ms. */
  settleMs?: number;
  /** How long the stream may take to send its first event before it is dropped and retried. Default 10,000 ms. */
  connectTimeoutMs?: number;
  /** First reconnect delay; doubles per failed attempt. Default 250 ms. */
  reconnectMinMs?: number;
  /** Cap of the reconnect delay. Default 5,000 ms (at most 30,000). */
  reconnectMaxMs?: number;
  /** The fetch used for both the verify calls and the stream (a proxy, a custom dispatcher). Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Called when the stream goes live or is lost. */
  onStreamState?: (state: StreamState) => void;
}

export interface VerifierStats {
  /** verify calls answered from the cache. */
  hits: number;
  /** verify calls that needed keyward (single-flight followers included). */
  misses: number;
  /** HTTP requests made to the verify endpoint. */
  requests: number;
  /** Entries in the cache. */
  size: number;
  /** Whether the event stream is live (entries are used and stored only then). */
  live: boolean;
  /** Times the stream went live. */
  connects: number;
}

export interface ResolvedVerifierOptions {
  url: string;
  timeoutMs: number;
  cache: boolean;
  cacheMaxEntries: number;
  cacheTtlMs: number;
  negativeTtlMs: number;
  settleMs: number;
  connectTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
}

/**
 * A per-connection memo for `cached`: the last key a connection presented and its digest (a
 * keep-alive client repeats its key, and the digest is the dearest step of a cache hit). Keep one
 * object per connection; it holds the key only as long as the connection lives.
 */
export interface DigestMemo {
  key?: string;
  digest?: string;
}

export interface Verifier {
  /** keyward's verdict on `presentedKey`: from the cache while the stream is live, else from keyward. Rejects with a KeywardError when keyward cannot answer. */
  verify(presentedKey: string, options?: VerifyOptions): Promise<VerifyResult>;
  /**
   * The verdict from the cache alone, synchronously, or undefined when the cache cannot answer
   * (then call `verify`). What the fastify plugin and the middleware try first. Results of hits
   * are frozen and may be shared. `clientIp` is read only for a key with an address allowlist
   * (then an address that is not an IP address makes the cache unable to answer).
   */
  cached(presentedKey: string, options?: Pick<VerifyOptions, 'requiredPermissions' | 'clientIp'>, memo?: DigestMemo): Readonly<VerifyResult> | undefined;
  /** Resolves true once the stream is live and settleMs has passed (the next answer can be cached); false after timeoutMs (default 10,000) or close. With `cache: false`, true at once. */
  ready(timeoutMs?: number): Promise<boolean>;
  stats(): VerifierStats;
  /** Ends the stream and its timers and empties the cache; later verify calls still ask keyward (uncached). */
  close(): void;
  readonly options: Readonly<ResolvedVerifierOptions>;
}

export const DEFAULTS = {
  timeoutMs: 2_000,
  cacheMaxEntries: 10_000,
  cacheTtlMs: 300_000,
  negativeTtlMs: 2_000,
  settleMs: 1_000,
  connectTimeoutMs: 10_000,
  reconnectMinMs: 250,
  reconnectMaxMs: 5_000,
} as const;

const CODES: ReadonlySet<string> = new Set<VerifyCode>(['VALID', 'NOT_FOUND', 'DISABLED', 'EXPIRED', 'IP_NOT_ALLOWED', 'INSUFFICIENT_PERMISSIONS', 'RATE_LIMITED']);
const DEFAULT_HEARTBEAT_MS = 5_000;
const RECONNECT_CAP_MS = 30_000;

/** keyward's own rule for a presented key (src/auth/key-format.ts): `jim_ak_`, visible ASCII, 32–256 characters. Anything else is NOT_FOUND without asking. */
const KEY_SHAPE = /^jim_ak_[\x21-\x7e]{25,249}$/;

type EntryState = 'active' | 'disabled' | 'expired' | 'not_found';

/** A CIDR block, parsed once per entry. */
type Block = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** What only some entries need checked on a hit (an entry without either has none: one null check). */
interface Guard {
  /** The key's allowlist, parsed; null: any address. */
  blocks: readonly Block[] | null;
  /** A grace-period secret: wall-clock ms after which the entry is not used (keyward says NOT_FOUND then). */
  secretUntilMs: number | null;
  /** The last client address judged, and whether it was inside (a keep-alive client repeats it). */
  lastIp: string | undefined;
  lastInside: boolean;
  /** The entry's IP_NOT_ALLOWED verdict, frozen, made once. */
  refusal: Readonly<VerifyResult> | undefined;
}

interface Entry {
  state: EntryState;
  /** Monotonic ms after which the entry is not used. */
  until: number;
  keyId: string | undefined;
  /** The key's details, frozen (shared by every hit). */
  details: Readonly<VerifyResult> | undefined;
  permissions: ReadonlySet<string>;
  /** Wall-clock expiry of the key, ms since the epoch; null: never. */
  expiresAtMs: number | null;
  /** An allowlist and/or a grace-period secret's end; null for most keys. */
  guard: Guard | null;
}

interface Flight {
  promise: Promise<VerifyResult>;
  /** The requiredPermissions sent, as a comparable string. */
  sent: string;
  /** When it was asked (monotonic): a change heard since makes its answer unfit to share. */
  startedAt: number;
}

const now = () => performance.now();

function positive(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new TypeError(`createVerifier: ${name} must be a non-negative number`);
  return value;
}

function resolveOptions(opts: VerifierOptions): ResolvedVerifierOptions {
  if (!opts || typeof opts !== 'object') throw new TypeError('createVerifier: options are required');
  if (typeof opts.url !== 'string' || !/^https?:\/\//i.test(opts.url)) throw new TypeError('createVerifier: url must be an http(s) URL');
  if (typeof opts.apiKey !== 'string' || opts.apiKey.trim() === '') throw new TypeError('createVerifier: apiKey is required');
  const reconnectMinMs = Math.max(10, positive('reconnectMinMs', opts.reconnectMinMs, DEFAULTS.reconnectMinMs));
  return {
    url: opts.url.replace(/\/+$/, ''),
    timeoutMs: Math.max(1, positive('timeoutMs', opts.timeoutMs, DEFAULTS.timeoutMs)),
    cache: opts.cache !== false,
    cacheMaxEntries: Math.floor(positive('cacheMaxEntries', opts.cacheMaxEntries, DEFAULTS.cacheMaxEntries)),
    // Options may only make the cache stricter: shorter lives, a longer settle window.
    cacheTtlMs: Math.min(DEFAULTS.cacheTtlMs, positive('cacheTtlMs', opts.cacheTtlMs, DEFAULTS.cacheTtlMs)),
    negativeTtlMs: Math.min(DEFAULTS.negativeTtlMs, positive('negativeTtlMs', opts.negativeTtlMs, DEFAULTS.negativeTtlMs)),
    settleMs: Math.max(DEFAULTS.settleMs, positive('settleMs', opts.settleMs, DEFAULTS.settleMs)),
    connectTimeoutMs: Math.max(1, positive('connectTimeoutMs', opts.connectTimeoutMs, DEFAULTS.connectTimeoutMs)),
    reconnectMinMs,
    reconnectMaxMs: Math.min(RECONNECT_CAP_MS, Math.max(reconnectMinMs, positive('reconnectMaxMs', opts.reconnectMaxMs, DEFAULTS.reconnectMaxMs))),
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

const NONE: readonly string[] = Object.freeze([]);
/** Checked once per array: routes pass the same array on every request. */
const normalized = new WeakMap<readonly string[], readonly string[]>();

function normalizePermissions(required: readonly string[] | undefined): readonly string[] {
  if (required === undefined || (Array.isArray(required) && required.length === 0)) return NONE;
  let n = normalized.get(required);
  if (n) return n;
  if (!Array.isArray(required)) throw new TypeError('verify: requiredPermissions must be an array of permission names');
  assertPermissionNames(required, 'verify: requiredPermissions');
  n = Object.freeze([...new Set(required)]);
  // Only a frozen array cannot change after it was checked; others are checked on every call.
  if (Object.isFrozen(required)) normalized.set(required, n);
  return n;
}

// crypto.hash (one-shot, Node >= 20.12) costs a fraction of a Hash object.
const oneShot = (crypto as unknown as { hash?: (alg: string, data: string, enc: 'base64url') => string }).hash;

/** `text` with every occurrence of `secret` blanked: a server's message never carries a presented key out. */
function scrub(text: string, secret: string): string {
  return secret && text.includes(secret) ? text.split(secret).join('[redacted]') : text;
}

function retryAfterOf(res: Response): number | undefined {
  const h = res.headers.get('retry-after');
  if (h === null) return undefined;
  const n = Number(h);
  if (Number.isFinite(n) && n >= 0) return Math.ceil(n);
  const at = Date.parse(h);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

function isResult(body: unknown): body is VerifyResult {
  if (!body || typeof body !== 'object') return false;
  const b = body as Record<string, unknown>;
  return (
    typeof b.valid === 'boolean' &&
    typeof b.code === 'string' &&
    CODES.has(b.code) &&
    b.valid === (b.code === 'VALID') &&
    (b.keyId === undefined || typeof b.keyId === 'string') &&
    (b.permissions === undefined || (Array.isArray(b.permissions) && b.permissions.every((p) => typeof p === 'string'))) &&
    (b.expiresAt === undefined || b.expiresAt === null || typeof b.expiresAt === 'string')
  );
}

/** The verdict of a key whose details are known, for `required`: EXPIRED by the clock, else by its permissions. */
function judge(details: Readonly<VerifyResult>, permissions: ReadonlySet<string>, expiresAtMs: number | null, required: readonly string[]): VerifyResult {
  if (expiresAtMs !== null && expiresAtMs <= Date.now()) return { ...details, valid: false, code: 'EXPIRED' };
  const missing = required.length === 0 ? [] : missingPermissions(permissions, required);
  if (missing.length > 0) return { ...details, valid: false, code: 'INSUFFICIENT_PERMISSIONS', missingPermissions: missing };
  return { ...details, valid: true, code: 'VALID' };
}

const MALFORMED = Symbol('malformed');

/**
 * A result's allowlist, parsed: null (any address: null or absent), the blocks, or MALFORMED when
 * any block is not what keyward sends (dotted-quad IPv4 or IPv6 CIDR, no zone, not IPv4-mapped):
 * a block this process might read differently from keyward makes the result uncacheable.
 */
function parseAllowlist(value: unknown): Block[] | null | typeof MALFORMED {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value)) return MALFORMED;
  const blocks: Block[] = [];
  for (const cidr of value) {
    if (typeof cidr !== 'string') return MALFORMED;
    let block: Block;
    try {
      block = ipaddr.parseCIDR(cidr);
    } catch {
      return MALFORMED;
    }
    const addr = block[0];
    if (addr.kind() === 'ipv4' ? !ipaddr.IPv4.isValidCIDRFourPartDecimal(cidr) : (addr as ipaddr.IPv6).zoneId !== undefined || (addr as ipaddr.IPv6).isIPv4MappedAddress()) return MALFORMED;
    blocks.push(block);
  }
  return blocks;
}

/** Whether `clientIp` (already checked by isIP) is inside one of `blocks`; undefined when ipaddr.js cannot read it. */
function inside(blocks: readonly Block[], clientIp: string): boolean | undefined {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.process(clientIp); // an IPv4-mapped IPv6 address is judged as the IPv4 one
  } catch {
    return undefined;
  }
  const kind = addr.kind();
  for (let i = 0; i < blocks.length; i++) {
    const [range, bits] = blocks[i]!;
    if (range.kind() === kind && addr.match(range, bits)) return true;
  }
  return false;
}

/** The result's key details alone (what a later verdict is built from). */
function detailsOf(r: VerifyResult): VerifyResult {
  const { valid: _valid, code, missingPermissions: _missing, retryAfterSeconds: _retry, ...details } = r;
  return { ...details, valid: false, code };
}

export function createVerifier(options: VerifierOptions): Verifier {
  const opts = resolveOptions(options);
  const apiKey = options.apiKey;
  const fetchImpl: typeof fetch = options.fetch ?? globalThis.fetch;
  const onStreamState = options.onStreamState;
  const verifyUrl = `${opts.url}/api/v1/apikeys/verify`;
  const eventsUrl = `${opts.url}/api/v1/apikeys/verify/events`;
  const salt = randomBytes(32);

  const cache = new Map<string, Entry>();
  const byKeyId = new Map<string, Set<string>>();
  const flights = new Map<string, Flight>();
  /** Monotonic time of the last invalidate naming each key id (pruned once older than any request in flight can be). */
  const invalidatedAt = new Map<string, number>();
  /** Monotonic time of the last reset or loss of the stream (its going live included). */
  let lastResetAt = now();
  let live = false;
  let closed = false;
  let source: EventSource | null = null;
  let watchdog: NodeJS.Timeout | null = null;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let attempt = 0;
  let heartbeatMs = DEFAULT_HEARTBEAT_MS;
  /** keyward's own cache age (its `connected` reset says): it re-reads a key no older; so does this cache. */
  let serverMaxAgeMs = Number.POSITIVE_INFINITY;
  /** Monotonic time of the last invalidate of any key (a request in flight since then is not shared). */
  let lastInvalidateAt = Number.NEGATIVE_INFINITY;
  const counters = { hits: 0, misses: 0, requests: 0, connects: 0 };

  // SHA-256 over a random per-process salt and the key: the cache never holds a key, and its
  // digests mean nothing outside this process.
  const saltText = salt.toString('base64url');
  const digestOf = (key: string) => (oneShot ? oneShot('sha256', saltText + key, 'base64url') : createHash('sha256').update(saltText + key).digest('base64url'));

  // ---- the cache ----------------------------------------------------------------------------

  function remove(digest: string): void {
    const entry = cache.get(digest);
    if (!entry) return;
    cache.delete(digest);
    if (entry.keyId !== undefined) {
      const set = byKeyId.get(entry.keyId);
      set?.delete(digest);
      if (set?.size === 0) byKeyId.delete(entry.keyId);
    }
  }

  function clear(): void {
    cache.clear();
    byKeyId.clear();
  }

  function lookup(digest: string): Entry | undefined {
    const entry = cache.get(digest);
    if (!entry) return undefined;
    if (entry.until <= now()) {
      remove(digest);
      return undefined;
    }
    // Least recently used goes first: a hit moves the entry to the end — once the cache is half
    // full (before that nothing is evicted, and the move is most of a hit's cost).
    if (cache.size * 2 > opts.cacheMaxEntries) {
      cache.delete(digest);
      cache.set(digest, entry);
    }
    return entry;
  }

  /** The frozen VALID verdict of an entry, made once (most hits need nothing else). */
  const validOf = new WeakMap<Entry, Readonly<VerifyResult>>();

  function answer(entry: Entry, required: readonly string[]): VerifyResult {
    switch (entry.state) {
      case 'not_found':
        return { valid: false, code: 'NOT_FOUND' };
      case 'disabled':
        return { ...entry.details!, valid: false, code: 'DISABLED' };
      case 'expired':
        return { ...entry.details!, valid: false, code: 'EXPIRED' };
      default:
        return judge(entry.details!, entry.permissions, entry.expiresAtMs, required);
    }
  }

  /**
   * What an entry's guard says for `clientIp`: undefined (judge it as usual), null (the cache cannot
   * answer: the grace-period secret has ended, and the entry is dropped, or the address cannot be
   * read), or the entry's IP_NOT_ALLOWED verdict. keyward's order: DISABLED and EXPIRED come before
   * IP_NOT_ALLOWED, which comes before the permissions.
   */
  function screen(digest: string, entry: Entry, guard: Guard, clientIp: unknown): Readonly<VerifyResult> | null | undefined {
    if (guard.secretUntilMs !== null && guard.secretUntilMs <= Date.now()) {
      remove(digest);
      return null;
    }
    const blocks = guard.blocks;
    if (blocks === null || entry.state !== 'active' || (entry.expiresAtMs !== null && entry.expiresAtMs <= Date.now())) return undefined;
    let ok: boolean | undefined;
    if (clientIp === undefined) ok = false; // keyward refuses a key with an allowlist when no address is sent
    else if (clientIp === guard.lastIp) ok = guard.lastInside; // checked when it was remembered
    else if (typeof clientIp !== 'string' || isIP(clientIp) === 0) return null;
    else {
      ok = inside(blocks, clientIp);
      if (ok === undefined) return null;
      guard.lastIp = clientIp;
      guard.lastInside = ok;
    }
    if (ok) return undefined;
    return (guard.refusal ??= deepFreeze({ ...entry.details!, valid: false, code: 'IP_NOT_ALLOWED' as const }));
  }

  /** Stores keyward's answer to a request started at `startedAt`, if the race guard allows. */
  function store(digest: string, result: VerifyResult, startedAt: number): void {
    if (!opts.cache || closed || !live) return;
    const t = now();
    // Anything that reset or lost the stream after (or just before) the request started may have
    // carried a change that keyward's answer predates.
    if (lastResetAt >= startedAt - opts.settleMs) return;
    if (t - startedAt > opts.timeoutMs + 1_000) return; // older than the invalidation record reaches
    if (result.code === 'RATE_LIMITED') return;
    // A key with a request limit of its own is never cached: keyward counts that limit, across all
    // its instances, only on the verifies it is asked, so every verify of the key must ask it.
    if (result.rateLimit !== undefined && result.rateLimit !== null) return;
    let entry: Entry;
    if (result.keyId === undefined) {
      if (result.code !== 'NOT_FOUND' || opts.negativeTtlMs <= 0) return;
      entry = { state: 'not_found', until: startedAt + opts.negativeTtlMs, keyId: undefined, details: undefined, permissions: new Set(), expiresAtMs: null, guard: null };
    } else {
      const inv = invalidatedAt.get(result.keyId);
      if (inv !== undefined && inv >= startedAt - opts.settleMs) return;
      // IP_NOT_ALLOWED is an active key refused for that one address: later hits are judged per address.
      const state: EntryState | undefined =
        result.code === 'VALID' || result.code === 'INSUFFICIENT_PERMISSIONS' || result.code === 'IP_NOT_ALLOWED'
          ? 'active'
          : result.code === 'DISABLED'
            ? 'disabled'
            : result.code === 'EXPIRED'
              ? 'expired'
              : undefined;
      if (state === undefined) return;
      let expiresAtMs: number | null = null;
      if (result.expiresAt !== undefined && result.expiresAt !== null) {
        expiresAtMs = Date.parse(result.expiresAt);
        if (Number.isNaN(expiresAtMs)) return;
      }
      if (state === 'active' && !Array.isArray(result.permissions)) return; // cannot judge later asks
      const blocks = parseAllowlist(result.allowedCidrs);
      if (blocks === MALFORMED) return;
      if (result.code === 'IP_NOT_ALLOWED' && blocks === null) return; // refused by an allowlist it did not send: cannot judge later asks
      let until = startedAt + Math.min(opts.cacheTtlMs, serverMaxAgeMs);
      // A grace-period secret: used until it ends by both clocks (the monotonic one here, the wall
      // clock on every hit), whichever comes first.
      let secretUntilMs: number | null = null;
      if (result.secretExpiresAt !== undefined && result.secretExpiresAt !== null) {
        secretUntilMs = typeof result.secretExpiresAt === 'string' ? Date.parse(result.secretExpiresAt) : Number.NaN;
        if (Number.isNaN(secretUntilMs)) return;
        const left = secretUntilMs - Date.now();
        if (left <= 0) return;
        until = Math.min(until, t + left);
      }
      const guard: Guard | null = blocks === null && secretUntilMs === null ? null : { blocks, secretUntilMs, lastIp: undefined, lastInside: false, refusal: undefined };
      const details = deepFreeze(detailsOf(structuredClone(result)));
      entry = { state, until, keyId: result.keyId, details, permissions: new Set(result.permissions ?? []), expiresAtMs, guard };
    }
    remove(digest);
    if (opts.cacheMaxEntries <= 0) return;
    cache.set(digest, entry);
    if (entry.keyId !== undefined) {
      let set = byKeyId.get(entry.keyId);
      if (!set) byKeyId.set(entry.keyId, (set = new Set()));
      set.add(digest);
    }
    while (cache.size > opts.cacheMaxEntries) {
      const oldest = cache.keys().next().value as string;
      remove(oldest);
    }
  }

  function invalidate(keyIds: readonly string[]): void {
    const t = now();
    lastInvalidateAt = t;
    for (const id of keyIds) {
      invalidatedAt.set(id, t);
      const set = byKeyId.get(id);
      if (set) for (const digest of [...set]) remove(digest);
    }
    if (invalidatedAt.size > 1_000) {
      const horizon = t - opts.settleMs - opts.timeoutMs - 5_000;
      for (const [id, at] of invalidatedAt) if (at < horizon) invalidatedAt.delete(id);
    }
  }

  // ---- the event stream ---------------------------------------------------------------------

  function setState(next: boolean, reason: string): void {
    const changed = live !== next;
    live = next;
    if (changed && onStreamState) {
      try {
        onStreamState({ live: next, reason });
      } catch {
        // a listener's failure is its own
      }
    }
  }

  function armWatchdog(ms: number, why: string): void {
    if (watchdog) clearTimeout(watchdog);
    watchdog = setTimeout(() => drop(why), ms);
    watchdog.unref();
  }

  /** The stream is lost (or reset): forget everything, refuse to store, and reconnect. */
  function drop(reason: string): void {
    lastResetAt = now();
    clear();
    if (watchdog) clearTimeout(watchdog);
    watchdog = null;
    const s = source;
    source = null;
    // After the current dispatch: closing inside eventsource's error event would leave its own
    // reconnect timer behind.
    if (s) queueMicrotask(() => s.close());
    setState(false, reason);
    scheduleReconnect();
  }

  function scheduleReconnect(): void {
    if (closed || reconnectTimer) return;
    const base = Math.min(opts.reconnectMaxMs, opts.reconnectMinMs * 2 ** Math.min(attempt, 16));
    attempt++;
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, Math.min(delay, opts.reconnectMaxMs));
    reconnectTimer.unref();
  }

  const streamFetch: FetchLike = (input: string | URL, init: EventSourceFetchInit) => {
    const headers = new Headers(init.headers);
    headers.set('x-api-key', apiKey);
    // A redirect would hand the consumer's key to wherever it points.
    return fetchImpl(input, { ...init, headers, redirect: 'error' });
  };

  function parse(data: string): unknown {
    try {
      return JSON.parse(data);
    } catch {
      return undefined;
    }
  }

  function connect(): void {
    if (closed || source) return;
    const es = new EventSource(eventsUrl, { fetch: streamFetch });
    source = es;
    armWatchdog(opts.connectTimeoutMs, 'no first event within connectTimeoutMs');
    const mine = () => source === es && !closed;
    es.addEventListener('reset', (ev: MessageEvent) => {
      if (!mine()) return;
      const data = parse(String(ev.data)) as { reason?: unknown; heartbeatMs?: unknown; maxAgeMs?: unknown } | undefined;
      if (data?.reason === 'connected') {
        // Live (again): nothing cached before can be trusted, and nothing in flight may be stored.
        lastResetAt = now();
        clear();
        const hb = Number(data.heartbeatMs);
        heartbeatMs = Number.isFinite(hb) && hb > 0 ? Math.min(Math.max(hb, 10), 60_000) : DEFAULT_HEARTBEAT_MS;
        // Changes made behind keyward's back send no event: keyward re-reads a key once its entry is
        // this old, and this cache keeps an answer no longer either.
        const maxAge = Number(data.maxAgeMs);
        serverMaxAgeMs = Number.isFinite(maxAge) && maxAge > 0 ? maxAge : Number.POSITIVE_INFINITY;
        armWatchdog(2 * heartbeatMs + 1_000, 'missed heartbeat');
        if (!live) {
          attempt = 0;
          counters.connects++;
        }
        setState(true, 'connected');
      } else {
        drop(`reset: ${typeof data?.reason === 'string' ? data.reason.slice(0, 100) : 'unknown'}`);
      }
    });
    es.addEventListener('invalidate', (ev: MessageEvent) => {
      if (!mine()) return;
      const data = parse(String(ev.data)) as { keyIds?: unknown } | undefined;
      const ids = data?.keyIds;
      if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) {
        drop('malformed invalidate event'); // which keys changed is unknown: forget them all
        return;
      }
      invalidate(ids as string[]);
      if (live) armWatchdog(2 * heartbeatMs + 1_000, 'missed heartbeat');
    });
    es.addEventListener('heartbeat', () => {
      if (!mine()) return;
      if (live) armWatchdog(2 * heartbeatMs + 1_000, 'missed heartbeat');
    });
    es.addEventListener('error', (ev: ErrorEvent) => {
      if (!mine()) return;
      drop(`error: ${ev.code !== undefined ? `HTTP ${ev.code}` : (ev.message ?? 'stream failed')}`);
    });
  }

  // ---- verify -------------------------------------------------------------------------------

  async function ask(key: string, required: readonly string[], clientIp: string | undefined): Promise<VerifyResult> {
    counters.requests++;
    const body: Record<string, unknown> = { key };
    if (required.length > 0) body.requiredPermissions = required;
    if (clientIp !== undefined) body.clientIp = clientIp;
    let res: Response;
    let text: string;
    try {
      res = await fetchImpl(verifyUrl, {
        method: 'POST',
        headers: { 'x-api-key': apiKey, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        redirect: 'error',
        signal: AbortSignal.timeout(opts.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      const e = err as { name?: string; cause?: { code?: string; message?: string }; message?: string };
      const why =
        e?.name === 'TimeoutError' || e?.name === 'AbortError'
          ? `no answer within ${opts.timeoutMs} ms`
          : (e?.cause?.code ?? e?.cause?.message ?? e?.message ?? 'request failed');
      throw new KeywardUnavailableError(`keyward could not be reached at ${verifyUrl}: ${scrub(String(why), key)}`);
    }
    const json = parse(text);
    if (res.status === 200) {
      if (!isResult(json)) throw new KeywardUnavailableError(`keyward answered ${verifyUrl} with a body that is not a verification result`, { status: 200 });
      return json;
    }
    const problem = (json && typeof json === 'object' ? json : {}) as { code?: unknown; detail?: unknown };
    const code = typeof problem.code === 'string' ? scrub(problem.code, key).slice(0, 100) : undefined;
    const detail = typeof problem.detail === 'string' ? `: ${scrub(problem.detail, key).slice(0, 500)}` : '';
    const message = `keyward answered ${res.status}${code ? ` ${code}` : ''}${detail}`;
    if (res.status === 429 || res.status >= 500) throw new KeywardUnavailableError(message, { status: res.status, code, retryAfterSeconds: retryAfterOf(res) });
    throw new KeywardRequestError(message, { status: res.status, code });
  }

  function cached(presentedKey: string, options: Pick<VerifyOptions, 'requiredPermissions' | 'clientIp'> = {}, memo?: DigestMemo): Readonly<VerifyResult> | undefined {
    if (!opts.cache || !live || closed || typeof presentedKey !== 'string') return undefined;
    const required = normalizePermissions(options.requiredPermissions);
    let digest: string;
    // Plain comparison: what it could leak by timing is this connection's own previous key.
    if (memo && memo.key === presentedKey && memo.digest !== undefined) digest = memo.digest;
    else {
      if (!KEY_SHAPE.test(presentedKey)) return undefined;
      digest = digestOf(presentedKey);
      if (memo) {
        memo.key = presentedKey;
        memo.digest = digest;
      }
    }
    const entry = lookup(digest);
    if (!entry) return undefined;
    if (entry.guard !== null) {
      const screened = screen(digest, entry, entry.guard, options.clientIp);
      if (screened === null) return undefined;
      if (screened !== undefined) {
        counters.hits++;
        return screened;
      }
    }
    counters.hits++;
    if (entry.state === 'active' && (entry.expiresAtMs === null || entry.expiresAtMs > Date.now())) {
      if (required.length === 0 || grantsAll(entry.permissions, required)) {
        let valid = validOf.get(entry);
        if (!valid) validOf.set(entry, (valid = deepFreeze({ ...entry.details!, valid: true, code: 'VALID' as const })));
        return valid;
      }
    }
    return answer(entry, required);
  }

  async function verify(presentedKey: string, verifyOptions: VerifyOptions = {}): Promise<VerifyResult> {
    if (typeof presentedKey !== 'string') throw new TypeError('verify: the presented key must be a string');
    const required = normalizePermissions(verifyOptions.requiredPermissions);
    const clientIp = verifyOptions.clientIp;
    if (clientIp !== undefined && (typeof clientIp !== 'string' || isIP(clientIp) === 0)) throw new TypeError('verify: clientIp must be an IPv4 or IPv6 address');
    // Not in keyward's shape: no key can match it, and keyward is not asked.
    if (!KEY_SHAPE.test(presentedKey)) return { valid: false, code: 'NOT_FOUND' };
    const digest = digestOf(presentedKey);
    if (opts.cache && live && !closed) {
      const entry = lookup(digest);
      if (entry) {
        const screened = entry.guard === null ? undefined : screen(digest, entry, entry.guard, clientIp);
        if (screened !== null) {
          counters.hits++;
          return screened === undefined ? answer(entry, required) : { ...screened };
        }
      }
    }
    counters.misses++;
    const sent = required.join('\n');
    const flightKey = `${digest}\n${clientIp ?? ''}`;
    let flight = flights.get(flightKey);
    // An answer asked for before a change was heard (or the stream reset) may predate it: not shared.
    if (flight && (lastInvalidateAt >= flight.startedAt || lastResetAt >= flight.startedAt)) flight = undefined;
    if (flight) {
      const shared = await flight.promise;
      // keyward counts a key's own limit per verify it is asked: one answer is not shared among many.
      if (shared.rateLimit !== undefined && shared.rateLimit !== null) return ask(presentedKey, required, clientIp);
      if (flight.sent === sent) return { ...shared };
      // The same answer, judged for this caller's permissions.
      if ((shared.code === 'VALID' || shared.code === 'INSUFFICIENT_PERMISSIONS') && Array.isArray(shared.permissions)) {
        const expiresAtMs = shared.expiresAt ? Date.parse(shared.expiresAt) : null;
        if (expiresAtMs === null || !Number.isNaN(expiresAtMs)) return judge(detailsOf(shared), new Set(shared.permissions), expiresAtMs, required);
      } else {
        return { ...shared };
      }
      // Not judgeable here: ask for this caller alone.
      return ask(presentedKey, required, clientIp);
    }
    const startedAt = now();
    const promise = ask(presentedKey, required, clientIp).then((result) => {
      store(digest, result, startedAt);
      return result;
    });
    flight = { promise, sent, startedAt };
    flights.set(flightKey, flight);
    const done = () => {
      if (flights.get(flightKey) === flight) flights.delete(flightKey);
    };
    promise.then(done, done);
    return { ...(await promise) };
  }

  async function ready(timeoutMs = 10_000): Promise<boolean> {
    if (!opts.cache) return true;
    const deadline = now() + timeoutMs;
    for (;;) {
      if (closed) return false;
      if (live && now() - lastResetAt > opts.settleMs) return true;
      const left = deadline - now();
      if (left <= 0) return false;
      await new Promise((r) => setTimeout(r, Math.min(20, left)));
    }
  }

  function close(): void {
    if (closed) return;
    closed = true;
    if (watchdog) clearTimeout(watchdog);
    if (reconnectTimer) clearTimeout(reconnectTimer);
    watchdog = reconnectTimer = null;
    const s = source;
    source = null;
    s?.close();
    clear();
    invalidatedAt.clear();
    setState(false, 'closed');
  }

  if (opts.cache) connect();

  return {
    verify,
    cached,
    ready,
    close,
    stats: () => ({ ...counters, size: cache.size, live }),
    options: Object.freeze({ ...opts }),
  };
}
