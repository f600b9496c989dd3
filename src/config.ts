// The environment is read here, once, at start-up. Nothing else reads process.env.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { cidrProblem } from './lib/cidr.js';
import { spanMs } from './lib/duration.js';
import { trustProxyProblem } from './lib/trust-proxy.js';
import { wholeNumber } from './lib/validation.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function isAddressOrCidr(value: string): boolean {
  const [addr, bits, ...rest] = value.split('/');
  if (rest.length || !isIP(addr)) return false;
  if (bits === undefined) return true;
  const max = isIP(addr) === 4 ? 32 : 128;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= max;
}

// Every rule says what is valid; loadConfig adds the variable's name (and, for a value that is
// not a secret, what was given).
const bool = (def: 'true' | 'false') =>
  z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default(def)
    .transform((v) => v === 'true');

const int = wholeNumber;
const ms = (def: number, min: number, max: number) => int(min, max).default(def);
const oneOf = <T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: `must be one of ${values.join(', ')}` });

/** Variables whose values are never repeated in a message. */
const SECRET_VARIABLES = new Set(['DATABASE_URL', 'DATABASE_DIRECT_URL', 'REDIS_URL', 'JIM_INFRASTRUCTURE_API_KEY', 'WEBHOOK_SECRET_KEY']);

/** A URL with one of `schemes` and a host. The message never echoes it: it may carry a password. */
const serviceUrl = (...schemes: string[]) =>
  z
    .string()
    .trim()
    .refine(
      (v) => {
        try {
          const u = new URL(v);
          return schemes.includes(u.protocol.slice(0, -1)) && u.hostname !== '';
        } catch {
          return false;
        }
      },
      { message: `must be a ${schemes.map((x) => `${x}://`).join(' or ')} URL with a host (value not shown)` },
    );

/** Comma-separated spans (250ms, 5s, 30m, 2h, 14d, 1w), each within [min, max] ms. */
const spanList = (def: string, min: number, max: number, what: string) =>
  z
    .string()
    .trim()
    .default(def)
    .refine((v) => v === 'none' || v.split(',').every((p) => { const n = spanMs(p); return n !== null && n >= min && n <= max; }), {
      message: `must be ${what}: comma-separated spans such as 5s, 30m, 2h, 14d (units ms, s, m, h, d, w), or none`,
    })
    .transform((v) => (v === 'none' ? [] : v.split(',').map((p) => spanMs(p)!)));

/** 32 bytes, as base64 (44 characters) or hex (64): the key that encrypts webhook signing secrets. */
const encryptionKey = z
  .string()
  .trim()
  .refine((v) => /^[0-9a-fA-F]{64}$/.test(v) || (/^[A-Za-z0-9+/_-]{43}=?$/.test(v) && Buffer.from(v, 'base64').length === 32), {
    message: 'must be 32 random bytes as base64 or hex, e.g. the output of: openssl rand -base64 32 (value not shown)',
  })
  .transform((v) => (/^[0-9a-fA-F]{64}$/.test(v) ? Buffer.from(v, 'hex') : Buffer.from(v, 'base64')));

/** Every variable the server reads; README's configuration table mirrors this. */
export const envSchema = z.object({
  NODE_ENV: oneOf(['development', 'production', 'test']).default('development'),
  DATABASE_URL: serviceUrl('postgres', 'postgresql').optional(),
  /**
   * A direct (unpooled) connection to the same database, for what a pooler in transaction mode
   * breaks: LISTEN, migrations and their session lock. Unset: DATABASE_URL serves for both.
   */
  DATABASE_DIRECT_URL: serviceUrl('postgres', 'postgresql').optional(),
  DATA_DIR: z.string().trim().min(1, { error: 'must be a folder path' }).default('./data'),
  HOST: z.string().trim().min(1, { error: 'must be an address to listen on, e.g. 127.0.0.1 or 0.0.0.0' }).default('127.0.0.1'),
  PORT: int(0, 65535).default(3000),
  LOG_LEVEL: oneOf(LOG_LEVELS).default('info'),
  LOG_FORMAT: oneOf(['auto', 'json', 'pretty']).default('auto'),
  /** Whole request, headers and body, must arrive within this. */
  REQUEST_TIMEOUT_MS: ms(30_000, 1_000, 600_000),
  /** Idle socket timeout. */
  CONNECTION_TIMEOUT_MS: ms(90_000, 1_000, 600_000),
  KEEP_ALIVE_TIMEOUT_MS: ms(72_000, 1_000, 600_000),
  /** Graceful shutdown deadline: in-flight requests, flush hooks, database. */
  SHUTDOWN_TIMEOUT_MS: ms(10_000, 1_000, 300_000),
  /** The health check's database probe gives up after this. */
  DB_HEALTH_TIMEOUT_MS: ms(2_000, 100, 60_000),
  DB_CONNECT_TIMEOUT_MS: ms(5_000, 100, 120_000),
  DB_POOL_MAX: int(1, 200).default(10),
  /** A query with no answer by then fails (a frozen database must not hold requests forever). */
  DB_QUERY_TIMEOUT_MS: ms(10_000, 100, 600_000),
  DB_MIGRATE_ON_START: bool('true'),
  /**
   * How often each instance proves its LISTEN connection hears what is sent through the pool (a
   * NOTIFY round trip); a proof keeps its cache trusted for 2.5 × this, and a write waits at most
   * that long for other instances to confirm they dropped what it changed.
   */
  DB_LISTEN_HEARTBEAT_MS: ms(2_000, 200, 60_000),
  /** As JIM: bootstraps an Administrator key with this secret, valid for 24 h. Never logged. */
  JIM_INFRASTRUCTURE_API_KEY: z.string().optional(),
  /** argon2id cost; values below OWASP's minimum (19456 KiB, t=2, p=1) only with NODE_ENV=test. */
  ARGON2_MEMORY_KIB: int(8, 4_194_304).default(19_456),
  ARGON2_TIME_COST: int(1, 100).default(2),
  ARGON2_PARALLELISM: int(1, 64).default(1),
  /** Verified-key cache: entries, and the age after which an entry's row version is re-read. */
  AUTH_CACHE_MAX_ENTRIES: int(0, 10_000_000).default(100_000),
  AUTH_CACHE_MAX_AGE_MS: ms(60_000, 0, 3_600_000),
  /** Wrong secrets for a real prefix, remembered briefly so repeats cost no argon2. */
  NEGATIVE_CACHE_MAX_ENTRIES: int(0, 1_000_000).default(10_000),
  NEGATIVE_CACHE_TTL_MS: ms(5_000, 0, 5_000),
  /** argon2 verifications at once, and waiting; beyond that a 503 OVERLOADED. */
  ARGON2_MAX_CONCURRENCY: int(1, 64).default(Math.max(1, availableParallelism() - 1)),
  ARGON2_MAX_QUEUE: int(0, 10_000).default(32),
  /** Share of the argon2 slots' time that verifications for prefixes or addresses with recent failures may take. */
  ARGON2_SUSPECT_SHARE_PERCENT: int(1, 100).default(25),
  /** Verifications those may keep waiting; beyond that an attempt is refused unverified. */
  ARGON2_SUSPECT_QUEUE: int(0, 100_000).default(128),
  /** A failed authentication is answered no sooner than this after the request arrived. */
  AUTH_FAILURE_DELAY_MS: ms(100, 0, 10_000),
  /** How often the verify event stream sends a heartbeat (consumers treat a silent stream as lost). */
  VERIFY_EVENTS_HEARTBEAT_MS: ms(5_000, 200, 60_000),
  /** Rate limits (per minute by default); shared through Redis when REDIS_URL is set. */
  RATE_LIMIT_ENABLED: bool('true'),
  RATE_LIMIT_KEY_MAX: int(1, 10_000_000).default(300),
  RATE_LIMIT_IP_MAX: int(1, 10_000_000).default(30),
  /** Wrong secrets per window for one real key prefix, checked before argon2. */
  RATE_LIMIT_PREFIX_MAX: int(1, 10_000_000).default(30),
  /** Leaked-key reports (POST /apikeys/revoke, unauthenticated) per window for one client network. */
  RATE_LIMIT_REVOKE_MAX: int(1, 10_000_000).default(10),
  RATE_LIMIT_WINDOW_MS: ms(60_000, 1_000, 86_400_000),
  REDIS_URL: serviceUrl('redis', 'rediss').optional(),
  /** A Redis command with no answer by then is counted in this instance's memory instead. */
  REDIS_COMMAND_TIMEOUT_MS: ms(500, 50, 60_000),
  /** Failed authentications: aggregation flush interval, retention, in-memory bound. */
  SECURITY_EVENTS_FLUSH_MS: ms(10_000, 100, 600_000),
  SECURITY_EVENTS_RETENTION_DAYS: int(1, 3650).default(365),
  SECURITY_EVENTS_MAX_BUCKETS: int(10, 10_000_000).default(50_000),
  /** How often batched lastUsedAt writes are flushed. */
  LAST_USED_FLUSH_MS: ms(5_000, 100, 600_000),
  /**
   * `false`, or the comma-separated addresses/CIDRs of the proxies in front: X-Forwarded-For is
   * honoured only through those (never "trust everyone": clients would choose their address).
   */
  TRUST_PROXY: z
    .string()
    .trim()
    .default('false')
    .refine((v) => v === 'false' || v.split(',').every((p) => isAddressOrCidr(p.trim())), {
      message: 'must be false or a comma-separated list of proxy IP addresses or CIDRs',
      abort: true,
    })
    .superRefine((v, ctx) => {
      const problem = v === 'false' ? null : trustProxyProblem(v.split(',').map((p) => p.trim()));
      if (problem) ctx.addIssue({ code: 'custom', message: `must list your proxies only: this value ${problem}` });
    })
    .transform((v): false | string => (v === 'false' ? false : v)),
  /** Prometheus metrics at GET /metrics: off unless enabled. */
  METRICS_ENABLED: bool('false'),
  /** Serve metrics on their own listener (no key needed) instead of the API port (metrics.read). */
  METRICS_PORT: int(0, 65535).optional(),
  /** Address of the metrics listener; defaults to HOST. */
  METRICS_HOST: z.string().trim().min(1).optional(),
  /** Registers the benchmark's routes (/bench/*, outside the API and its document): `npm run bench` only. */
  BENCH_ROUTES: bool('false'),
  /** Encrypts webhook signing secrets at rest; unset: the webhook routes answer 503 and nothing is sent. */
  WEBHOOK_SECRET_KEY: encryptionKey.optional(),
  /** Plain-http webhook URLs (off: https only). */
  WEBHOOK_ALLOW_HTTP: bool('false'),
  /** Address blocks webhooks may reach although loopback, private or link-local (e.g. 10.20.0.0/16). */
  WEBHOOK_ALLOWED_NETWORKS: z
    .string()
    .trim()
    .default('')
    .superRefine((v, ctx) => {
      for (const block of v ? v.split(',').map((p) => p.trim()) : []) {
        const problem = cidrProblem(block);
        if (problem) ctx.addIssue({ code: 'custom', message: `must be comma-separated CIDR blocks: ${block} ${problem}` });
      }
    })
    .transform((v) => (v ? v.split(',').map((p) => p.trim()) : [])),
  /** One attempt's whole time: connect, send, answer. */
  WEBHOOK_TIMEOUT_MS: ms(10_000, 100, 120_000),
  /** The waits after the first attempt (which is immediate); the Standard Webhooks schedule by default. */
  WEBHOOK_RETRY_SCHEDULE: spanList('5s,5m,30m,2h,5h,10h,10h', 1, 7 * 86_400_000, 'the waits before each retry'),
  /** A subscription failing for this long (no success since its first failure) is disabled. */
  WEBHOOK_DISABLE_AFTER: spanList('5d', 1_000, 365 * 86_400_000, 'one span'),
  /** How often each instance looks for deliveries that are due. */
  WEBHOOK_POLL_MS: ms(1_000, 50, 60_000),
  /** Deliveries one instance sends at once. */
  WEBHOOK_CONCURRENCY: int(1, 100).default(8),
  /** Events and their delivery logs are kept this long. */
  WEBHOOK_RETENTION_DAYS: int(1, 3650).default(30),
  /** apikey.expiring is sent this long before a key expires (each once per key); none: never. */
  EXPIRY_WARNING_LEADS: spanList('14d,1d', 60_000, 365 * 86_400_000, 'lead times'),
  /** Keys unused for this many days are disabled (apikey.disabled_idle); unset: never. */
  IDLE_KEY_DISABLE_DAYS: int(1, 3650).optional(),
  /** How often every instance tries the policies (expiry warnings, idle keys, pruning); one acts at a time. */
  SCHEDULER_INTERVAL_MS: ms(60_000, 100, 86_400_000),
  /** Per-key usage counts (GET /apikeys/{id}/usage, /usage/top): counted in memory, written in batches. */
  USAGE_COUNTING: bool('true'),
  /** How often each instance writes the counts it gathered. */
  USAGE_FLUSH_MS: ms(10_000, 100, 600_000),
  /** Minute buckets are rolled up into hours once older than this. */
  USAGE_MINUTES_KEPT: spanList('48h', 3_600_000, 366 * 86_400_000, 'one span of at least 1h'),
  /** Hour buckets are rolled up into days (UTC) once older than this. */
  USAGE_HOURS_KEPT: spanList('90d', 86_400_000, 3650 * 86_400_000, 'one span of at least 1d'),
  /** Usage older than this is deleted. */
  USAGE_RETENTION_DAYS: int(1, 3650).default(400),
  /** Key-minutes held in memory while the database cannot take them; beyond, the oldest minute is dropped (and logged). */
  USAGE_MAX_PENDING: int(1_000, 10_000_000).default(200_000),
  /** HTTPS directly from the server: PEM certificate (chain) and private key, both or neither. */
  TLS_CERT_FILE: z.string().trim().min(1).optional(),
  TLS_KEY_FILE: z.string().trim().min(1).optional(),
});

export type Env = z.infer<typeof envSchema>;

export const ARGON2_MINIMUM = { memoryKib: 19_456, timeCost: 2, parallelism: 1 };

export interface Config {
  env: Env['NODE_ENV'];
  /** null: start the embedded PostgreSQL in `dataDir`. */
  databaseUrl: string | null;
  /** LISTEN, migrations, session locks; null: databaseUrl (or the embedded server). */
  directDatabaseUrl: string | null;
  dataDir: string;
  /** DATA_DIR was not set: as root, the embedded database may move to /var/lib/keyward (README "The embedded default"). */
  dataDirDefault: boolean;
  host: string;
  port: number;
  log: { level: Env['LOG_LEVEL']; format: Env['LOG_FORMAT'] };
  timeouts: {
    requestMs: number;
    connectionMs: number;
    keepAliveMs: number;
    shutdownMs: number;
    dbHealthMs: number;
    dbConnectMs: number;
    /** How often Node checks connections against the request timeout (its default, 30 s, is too coarse). */
    checkingIntervalMs: number;
  };
  db: { poolMax: number; migrateOnStart: boolean; queryTimeoutMs: number; listenHeartbeatMs: number };
  trustProxy: false | string;
  /** The raw JIM_INFRASTRUCTURE_API_KEY (a secret), validated by the bootstrap. */
  infrastructureKey: string | null;
  argon2: { memoryKib: number; timeCost: number; parallelism: number; maxConcurrency: number; maxQueue: number; suspectShare: number; suspectQueue: number };
  authFailureDelayMs: number;
  verifyEventsHeartbeatMs: number;
  benchRoutes: boolean;
  authCache: { maxEntries: number; maxAgeMs: number; negativeMaxEntries: number; negativeTtlMs: number };
  lastUsedFlushMs: number;
  usage: { enabled: boolean; flushMs: number; minutesKeptMs: number; hoursKeptMs: number; retentionDays: number; maxPending: number };
  rateLimit: { enabled: boolean; keyMax: number; ipMax: number; prefixMax: number; revokeMax: number; windowMs: number; redisUrl: string | null; redisCommandTimeoutMs: number };
  securityEvents: { flushMs: number; retentionDays: number; maxBuckets: number };
  /** `port: null`: on the API port, behind the metrics.read permission. */
  metrics: { enabled: boolean; port: number | null; host: string };
  /** secretKey null: webhooks are off (their routes answer 503). */
  webhooks: {
    secretKey: Buffer | null;
    allowHttp: boolean;
    allowedNetworks: string[];
    timeoutMs: number;
    retryScheduleMs: number[];
    disableAfterMs: number;
    pollMs: number;
    concurrency: number;
    retentionDays: number;
  };
  policies: { expiryLeadsMs: number[]; idleDisableDays: number | null; intervalMs: number };
  /** PEM material read at start-up; null: plain HTTP. */
  tls: { cert: Buffer; key: Buffer; certFile: string; keyFile: string } | null;
}

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n${issues.map((i) => `  - ${i}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** ` (got "80x")` for a value that is not a secret and cannot hold one; nothing otherwise. */
function shownValue(name: string, value: string | undefined): string {
  if (value === undefined || SECRET_VARIABLES.has(name)) return '';
  if (value.length > 64 || /jim_ak_|@|:\/\//i.test(value)) return ' (value not shown)';
  return ` (got ${JSON.stringify(value)})`;
}

/** Parses the environment; throws ConfigError naming each bad variable and what is valid, never a secret. */
export function loadConfig(source: Record<string, string | undefined>): Config {
  // Empty strings mean "unset", as in most shells' `VAR= cmd`.
  const cleaned = Object.fromEntries(
    Object.keys(envSchema.shape).map((k) => [k, source[k] === '' ? undefined : source[k]]),
  );
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => {
        const name = String(i.path[0] ?? '(environment)');
        // Our rules never quote the value; zod's defaults (an unexpected case) might.
        const ours = i.message.startsWith('must ');
        return `${name}: ${ours ? i.message : 'is invalid'}${shownValue(name, cleaned[name])}`;
      }),
    );
  }
  const e = parsed.data;
  if (e.KEEP_ALIVE_TIMEOUT_MS >= e.CONNECTION_TIMEOUT_MS) {
    throw new ConfigError(['KEEP_ALIVE_TIMEOUT_MS: must be less than CONNECTION_TIMEOUT_MS, or idle keep-alive sockets are cut early']);
  }
  if (e.NODE_ENV !== 'test') {
    const weak: string[] = [];
    if (e.ARGON2_MEMORY_KIB < ARGON2_MINIMUM.memoryKib) weak.push(`ARGON2_MEMORY_KIB: must be at least ${ARGON2_MINIMUM.memoryKib}`);
    if (e.ARGON2_TIME_COST < ARGON2_MINIMUM.timeCost) weak.push(`ARGON2_TIME_COST: must be at least ${ARGON2_MINIMUM.timeCost}`);
    if (weak.length) throw new ConfigError(weak.map((w) => `${w} (lower values are allowed only with NODE_ENV=test)`));
  }
  if (e.DATABASE_DIRECT_URL !== undefined && e.DATABASE_URL === undefined) {
    throw new ConfigError(['DATABASE_DIRECT_URL: set DATABASE_URL as well (the embedded database needs neither)']);
  }
  if (e.WEBHOOK_DISABLE_AFTER.length !== 1) {
    throw new ConfigError(['WEBHOOK_DISABLE_AFTER: must be one span, such as 5d']);
  }
  for (const name of ['USAGE_MINUTES_KEPT', 'USAGE_HOURS_KEPT'] as const) {
    if (e[name].length !== 1) throw new ConfigError([`${name}: must be one span, such as ${name === 'USAGE_MINUTES_KEPT' ? '48h' : '90d'}`]);
  }
  if (e.USAGE_HOURS_KEPT[0]! < e.USAGE_MINUTES_KEPT[0]!) throw new ConfigError(['USAGE_HOURS_KEPT: must be at least USAGE_MINUTES_KEPT (hours are made from minutes)']);
  if (e.USAGE_RETENTION_DAYS * 86_400_000 < e.USAGE_HOURS_KEPT[0]!) throw new ConfigError(['USAGE_RETENTION_DAYS: must cover at least USAGE_HOURS_KEPT (days are made from hours)']);
  if (e.METRICS_PORT !== undefined && !e.METRICS_ENABLED) {
    throw new ConfigError(['METRICS_PORT: set METRICS_ENABLED=true as well, or unset METRICS_PORT']);
  }
  if (e.METRICS_PORT !== undefined && e.METRICS_PORT !== 0 && e.METRICS_PORT === e.PORT) {
    throw new ConfigError(['METRICS_PORT: must differ from PORT']);
  }
  return {
    env: e.NODE_ENV,
    databaseUrl: e.DATABASE_URL ?? null,
    directDatabaseUrl: e.DATABASE_DIRECT_URL ?? null,
    dataDir: path.resolve(e.DATA_DIR),
    dataDirDefault: cleaned.DATA_DIR === undefined,
    host: e.HOST,
    port: e.PORT,
    log: { level: e.LOG_LEVEL, format: e.LOG_FORMAT },
    timeouts: {
      requestMs: e.REQUEST_TIMEOUT_MS,
      connectionMs: e.CONNECTION_TIMEOUT_MS,
      keepAliveMs: e.KEEP_ALIVE_TIMEOUT_MS,
      shutdownMs: e.SHUTDOWN_TIMEOUT_MS,
      dbHealthMs: e.DB_HEALTH_TIMEOUT_MS,
      dbConnectMs: e.DB_CONNECT_TIMEOUT_MS,
      checkingIntervalMs: Math.min(5_000, Math.max(250, Math.floor(e.REQUEST_TIMEOUT_MS / 10))),
    },
    db: { poolMax: e.DB_POOL_MAX, migrateOnStart: e.DB_MIGRATE_ON_START, queryTimeoutMs: e.DB_QUERY_TIMEOUT_MS, listenHeartbeatMs: e.DB_LISTEN_HEARTBEAT_MS },
    trustProxy: e.TRUST_PROXY,
    infrastructureKey: e.JIM_INFRASTRUCTURE_API_KEY ?? null,
    argon2: {
      memoryKib: e.ARGON2_MEMORY_KIB,
      timeCost: e.ARGON2_TIME_COST,
      parallelism: e.ARGON2_PARALLELISM,
      maxConcurrency: e.ARGON2_MAX_CONCURRENCY,
      maxQueue: e.ARGON2_MAX_QUEUE,
      suspectShare: e.ARGON2_SUSPECT_SHARE_PERCENT / 100,
      suspectQueue: e.ARGON2_SUSPECT_QUEUE,
    },
    authFailureDelayMs: e.AUTH_FAILURE_DELAY_MS,
    verifyEventsHeartbeatMs: e.VERIFY_EVENTS_HEARTBEAT_MS,
    benchRoutes: e.BENCH_ROUTES,
    authCache: {
      maxEntries: e.AUTH_CACHE_MAX_ENTRIES,
      maxAgeMs: e.AUTH_CACHE_MAX_AGE_MS,
      negativeMaxEntries: e.NEGATIVE_CACHE_MAX_ENTRIES,
      negativeTtlMs: e.NEGATIVE_CACHE_TTL_MS,
    },
    lastUsedFlushMs: e.LAST_USED_FLUSH_MS,
    usage: {
      enabled: e.USAGE_COUNTING,
      flushMs: e.USAGE_FLUSH_MS,
      minutesKeptMs: e.USAGE_MINUTES_KEPT[0]!,
      hoursKeptMs: e.USAGE_HOURS_KEPT[0]!,
      retentionDays: e.USAGE_RETENTION_DAYS,
      maxPending: e.USAGE_MAX_PENDING,
    },
    rateLimit: {
      enabled: e.RATE_LIMIT_ENABLED,
      keyMax: e.RATE_LIMIT_KEY_MAX,
      ipMax: e.RATE_LIMIT_IP_MAX,
      prefixMax: e.RATE_LIMIT_PREFIX_MAX,
      revokeMax: e.RATE_LIMIT_REVOKE_MAX,
      windowMs: e.RATE_LIMIT_WINDOW_MS,
      redisUrl: e.REDIS_URL ?? null,
      redisCommandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
    },
    securityEvents: {
      flushMs: e.SECURITY_EVENTS_FLUSH_MS,
      retentionDays: e.SECURITY_EVENTS_RETENTION_DAYS,
      maxBuckets: e.SECURITY_EVENTS_MAX_BUCKETS,
    },
    webhooks: {
      secretKey: e.WEBHOOK_SECRET_KEY ?? null,
      allowHttp: e.WEBHOOK_ALLOW_HTTP,
      allowedNetworks: e.WEBHOOK_ALLOWED_NETWORKS,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      retryScheduleMs: e.WEBHOOK_RETRY_SCHEDULE,
      disableAfterMs: e.WEBHOOK_DISABLE_AFTER[0],
      pollMs: e.WEBHOOK_POLL_MS,
      concurrency: e.WEBHOOK_CONCURRENCY,
      retentionDays: e.WEBHOOK_RETENTION_DAYS,
    },
    policies: {
      // Longest first: a key inside several lead times at once is warned once, for the shortest.
      expiryLeadsMs: [...new Set(e.EXPIRY_WARNING_LEADS)].sort((a, b) => b - a),
      idleDisableDays: e.IDLE_KEY_DISABLE_DAYS ?? null,
      intervalMs: e.SCHEDULER_INTERVAL_MS,
    },
    metrics: { enabled: e.METRICS_ENABLED, port: e.METRICS_PORT ?? null, host: e.METRICS_HOST ?? e.HOST },
    tls: loadTls(e.TLS_CERT_FILE, e.TLS_KEY_FILE),
  };
}

/** Reads and checks the certificate and key now, so a bad pair stops the start with a clear message. */
function loadTls(certFile: string | undefined, keyFile: string | undefined): Config['tls'] {
  if (certFile === undefined && keyFile === undefined) return null;
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError([`${certFile === undefined ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'}: required when ${certFile === undefined ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'} is set`]);
  }
  const read = (name: string, file: string) => {
    try {
      return readFileSync(path.resolve(file));
    } catch (err) {
      throw new ConfigError([`${name}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
    }
  };
  const cert = read('TLS_CERT_FILE', certFile);
  const key = read('TLS_KEY_FILE', keyFile);
  try {
    createSecureContext({ cert, key });
  } catch {
    // OpenSSL's message names neither file; it never includes key material.
    throw new ConfigError(['TLS_CERT_FILE/TLS_KEY_FILE: not a PEM certificate and its matching private key']);
  }
  return { cert, key, certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) };
}
