// The usage table's SQL: adding counts (from any instance), rolling minutes up into hours and
// hours into days, pruning, and the two reads (one key's buckets, the busiest keys).
import type { PrismaClient } from '../generated/prisma/client.js';
import { USAGE_OUTCOMES, type OutcomeCounts } from './outcomes.js';

export interface UsageRow {
  keyId: string;
  /** The minute's start. */
  at: Date;
  /** By outcome, in USAGE_OUTCOMES order. */
  counts: number[];
}

type Sums = { valid: number; disabled: number; expired: number; insufficient_permissions: number; rate_limited: number; ip_not_allowed: number };

const countsOf = (r: Sums): OutcomeCounts => ({
  VALID: Number(r.valid),
  DISABLED: Number(r.disabled),
  EXPIRED: Number(r.expired),
  INSUFFICIENT_PERMISSIONS: Number(r.insufficient_permissions),
  RATE_LIMITED: Number(r.rate_limited),
  IP_NOT_ALLOWED: Number(r.ip_not_allowed),
});

export function createUsageStore(prisma: PrismaClient, opts: { writeTimeoutMs: number }) {
  const column = (i: number) => (rows: UsageRow[]) => rows.map((r) => r.counts[i] ?? 0);
  const columns = USAGE_OUTCOMES.map((_, i) => column(i));

  return {
    /**
     * Adds the rows' counts to what is stored. Rows of a key deleted meanwhile are dropped (the
     * join); duplicates are summed first, and the rows are taken in key order, so two instances
     * writing the same rows wait for each other instead of deadlocking. Bounded on the server
     * (statement_timeout, below the client's query timeout): a write the client gave up on must
     * never land later as well, or its retry would count it twice.
     */
    async add(rows: UsageRow[]): Promise<void> {
      if (!rows.length) return;
      const [v, d, e, ip, rl, na] = columns.map((c) => c(rows));
      await prisma.$transaction([
        prisma.$executeRaw`SELECT set_config('statement_timeout', ${String(opts.writeTimeoutMs)}, true)`,
        prisma.$executeRaw`
        INSERT INTO key_usage AS u (api_key_id, bucket_start, granularity, valid, disabled, expired, insufficient_permissions, rate_limited, ip_not_allowed)
        SELECT r.id, r.at, 'minute', sum(r.v), sum(r.d), sum(r.e), sum(r.ip), sum(r.rl), sum(r.na)
          FROM unnest(${rows.map((r) => r.keyId)}::uuid[], ${rows.map((r) => r.at.toISOString())}::timestamptz[], ${v}::int8[], ${d}::int8[], ${e}::int8[], ${ip}::int8[], ${rl}::int8[], ${na}::int8[])
               AS r(id, at, v, d, e, ip, rl, na)
          JOIN api_keys k ON k.id = r.id
         GROUP BY r.id, r.at
         ORDER BY r.id, r.at
        ON CONFLICT (api_key_id, bucket_start, granularity) DO UPDATE SET
          valid = u.valid + excluded.valid,
          disabled = u.disabled + excluded.disabled,
          expired = u.expired + excluded.expired,
          insufficient_permissions = u.insufficient_permissions + excluded.insufficient_permissions,
          rate_limited = u.rate_limited + excluded.rate_limited,
          ip_not_allowed = u.ip_not_allowed + excluded.ip_not_allowed`,
      ]);
    },

    /**
     * Moves the `from` buckets that start before `before` (a boundary of `to`) into `to` buckets,
     * in one statement: the rows are deleted and their sums added in the same transaction, so a
     * count is never in both or neither. Returns the rows moved.
     */
    async rollUp(from: 'minute' | 'hour', to: 'hour' | 'day', before: Date): Promise<number> {
      return prisma.$executeRaw`
        WITH moved AS (
          DELETE FROM key_usage WHERE granularity = ${from}::text AND bucket_start < ${before.toISOString()}::timestamptz
          RETURNING api_key_id, bucket_start, valid, disabled, expired, insufficient_permissions, rate_limited, ip_not_allowed)
        INSERT INTO key_usage AS u (api_key_id, bucket_start, granularity, valid, disabled, expired, insufficient_permissions, rate_limited, ip_not_allowed)
        SELECT api_key_id, date_trunc(${to}::text, bucket_start, 'UTC'), ${to}::text, sum(valid), sum(disabled), sum(expired), sum(insufficient_permissions), sum(rate_limited), sum(ip_not_allowed)
          FROM moved GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (api_key_id, bucket_start, granularity) DO UPDATE SET
          valid = u.valid + excluded.valid,
          disabled = u.disabled + excluded.disabled,
          expired = u.expired + excluded.expired,
          insufficient_permissions = u.insufficient_permissions + excluded.insufficient_permissions,
          rate_limited = u.rate_limited + excluded.rate_limited,
          ip_not_allowed = u.ip_not_allowed + excluded.ip_not_allowed`;
    },

    async prune(before: Date): Promise<number> {
      return prisma.$executeRaw`DELETE FROM key_usage WHERE bucket_start < ${before.toISOString()}::timestamptz`;
    },

    /** One key's counts in [from, to), summed per bucket of `bucketMs` counted from `from`: index and counts. */
    async series(keyId: string, from: Date, to: Date, bucketMs: number): Promise<Array<{ index: number; counts: OutcomeCounts }>> {
      const rows = await prisma.$queryRaw<Array<Sums & { i: number }>>`
        SELECT floor(extract(epoch FROM bucket_start - ${from.toISOString()}::timestamptz) * 1000 / ${bucketMs})::int AS i,
               sum(valid)::float8 AS valid, sum(disabled)::float8 AS disabled, sum(expired)::float8 AS expired,
               sum(insufficient_permissions)::float8 AS insufficient_permissions, sum(rate_limited)::float8 AS rate_limited, sum(ip_not_allowed)::float8 AS ip_not_allowed
          FROM key_usage
         WHERE api_key_id = ${keyId}::uuid AND bucket_start >= ${from.toISOString()}::timestamptz AND bucket_start < ${to.toISOString()}::timestamptz
         GROUP BY 1`;
      return rows.map((r) => ({ index: r.i, counts: countsOf(r) }));
    },

    /** The keys with the most uses in [from, to), busiest first (ties by id). */
    async top(from: Date, to: Date, limit: number): Promise<Array<{ keyId: string; name: string; keyPrefix: string; total: number; counts: OutcomeCounts }>> {
      const rows = await prisma.$queryRaw<Array<Sums & { id: string; name: string; key_prefix: string; total: number }>>`
        SELECT u.api_key_id::text AS id, k.name, k.key_prefix,
               sum(valid + disabled + expired + insufficient_permissions + rate_limited + ip_not_allowed)::float8 AS total,
               sum(valid)::float8 AS valid, sum(disabled)::float8 AS disabled, sum(expired)::float8 AS expired,
               sum(insufficient_permissions)::float8 AS insufficient_permissions, sum(rate_limited)::float8 AS rate_limited, sum(ip_not_allowed)::float8 AS ip_not_allowed
          FROM key_usage u JOIN api_keys k ON k.id = u.api_key_id
         WHERE u.bucket_start >= ${from.toISOString()}::timestamptz AND u.bucket_start < ${to.toISOString()}::timestamptz
         GROUP BY u.api_key_id, k.name, k.key_prefix
         ORDER BY total DESC, u.api_key_id
         LIMIT ${limit}`;
      return rows.map((r) => ({ keyId: r.id, name: r.name, keyPrefix: r.key_prefix, total: Number(r.total), counts: countsOf(r) }));
    },
  };
}

export type UsageStore = ReturnType<typeof createUsageStore>;
