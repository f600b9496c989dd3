// The webhook tables' SQL: subscriptions, and the deliveries each instance claims, attempts and
// settles. Claims use FOR UPDATE SKIP LOCKED and a lease (locked_until): instances never take the
// same delivery, and one whose instance died is taken again once its lease runs out.
import { Prisma, type PrismaClient } from '../generated/prisma/client.js';

export interface WebhookRow {
  id: string;
  url: string;
  description: string | null;
  eventTypes: string[];
  isEnabled: boolean;
  disabledReason: string | null;
  secretCiphertext: string;
  previousSecretCiphertext: string | null;
  previousSecretExpiresAt: Date | null;
  failingSince: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  payload: string;
  /** This attempt's number (1 for the first). */
  attempt: number;
  createdAt: Date;
  url: string;
  secretCiphertext: string;
  previousSecretCiphertext: string | null;
  previousSecretExpiresAt: Date | null;
  /** Its subscription had a failing streak when it was claimed. */
  failing: boolean;
}

export interface AttemptRecord {
  number: number;
  startedAt: Date;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  responseBody: string | null;
}

interface DetailRow {
  id: string;
  webhook_id: string;
  event_id: string;
  attempt_count: number;
  created_at: Date;
  type: string;
  payload: string;
  url: string;
  secret_ciphertext: string;
  previous_secret_ciphertext: string | null;
  previous_secret_expires_at: Date | null;
  failing_since: Date | null;
}

/** The rest of a claim's query: each claimed delivery with its event and subscription. */
const DETAILS_FROM = (cte: string) =>
  Prisma.raw(`SELECT c.id, c.webhook_id, c.event_id, c.attempt_count, c.created_at, e.type, e.payload, w.url, w.secret_ciphertext,
         w.previous_secret_ciphertext, w.previous_secret_expires_at, w.failing_since
    FROM ${cte} c JOIN webhook_events e ON e.id = c.event_id JOIN webhooks w ON w.id = c.webhook_id`);

const toClaimed = (r: DetailRow): ClaimedDelivery => ({
  id: r.id,
  webhookId: r.webhook_id,
  eventId: r.event_id,
  eventType: r.type,
  payload: r.payload,
  attempt: r.attempt_count,
  createdAt: r.created_at,
  url: r.url,
  secretCiphertext: r.secret_ciphertext,
  previousSecretCiphertext: r.previous_secret_ciphertext,
  previousSecretExpiresAt: r.previous_secret_expires_at,
  failing: r.failing_since !== null,
});

export function createWebhookStore(prisma: PrismaClient) {
  return {
    /**
     * Takes up to `limit` due deliveries of enabled subscriptions for `instanceId`, each for
     * `leaseMs`; their attempt count moves now, so an attempt cut off by a crash still counts.
     */
    async claimDue(instanceId: string, limit: number, leaseMs: number): Promise<ClaimedDelivery[]> {
      // One round trip: the claim, and what sending needs (event body, URL, sealed secrets).
      const rows = await prisma.$queryRaw<DetailRow[]>`
        WITH claimed AS (
          UPDATE webhook_deliveries d
             SET locked_until = now() + make_interval(secs => ${leaseMs / 1000}), locked_by = ${instanceId}, attempt_count = d.attempt_count + 1
           WHERE d.id IN (
             SELECT d2.id FROM webhook_deliveries d2 JOIN webhooks w ON w.id = d2.webhook_id JOIN webhook_events e ON e.id = d2.event_id
              -- A test ping goes to a disabled subscription too (one whose instance died is finished by another).
              WHERE d2.status = 'pending' AND d2.next_attempt_at <= now() AND (w.is_enabled OR e.type = 'ping')
                AND (d2.locked_until IS NULL OR d2.locked_until < now())
              ORDER BY d2.next_attempt_at
              LIMIT ${limit}
              FOR UPDATE OF d2 SKIP LOCKED)
          RETURNING d.id, d.webhook_id, d.event_id, d.attempt_count, d.created_at)
        ${DETAILS_FROM('claimed')}`;
      return rows.map(toClaimed);
    },

    /** A delivery this instance already holds (the test ping, inserted claimed). */
    async held(deliveryId: string): Promise<ClaimedDelivery | null> {
      const rows = await prisma.$queryRaw<DetailRow[]>`
        WITH claimed AS (SELECT id, webhook_id, event_id, attempt_count, created_at FROM webhook_deliveries WHERE id = ${deliveryId}::uuid)
        ${DETAILS_FROM('claimed')}`;
      return rows.map(toClaimed)[0] ?? null;
    },

    /** Gives back claims not attempted (the instance is stopping): due again at once, the attempt not counted. */
    async release(instanceId: string, ids: string[]): Promise<void> {
      if (!ids.length) return;
      await prisma.$executeRaw`UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL, attempt_count = attempt_count - 1
        WHERE id = ANY(${ids}::uuid[]) AND locked_by = ${instanceId}`;
    },

    /**
     * Records the attempt and settles the delivery: succeeded, failed, or pending again at
     * `retryInMs` — only while this instance still holds the claim (a slower instance whose
     * lease ran out must not overwrite the one that took over). Returns false when it lost it.
     */
    async settle(
      instanceId: string,
      d: ClaimedDelivery,
      attempt: AttemptRecord,
      outcome: { status: 'succeeded' | 'failed' } | { status: 'pending'; retryInMs: number },
    ): Promise<boolean> {
      const retryInMs = outcome.status === 'pending' ? outcome.retryInMs : 0;
      // One statement: the attempt's row (while the delivery exists: its subscription may have been
      // deleted meanwhile) and the delivery's new state (while this instance still holds it).
      const rows = await prisma.$queryRaw<Array<{ held: bigint }>>`
        WITH settled AS (
          UPDATE webhook_deliveries SET status = ${outcome.status},
                 next_attempt_at = CASE WHEN ${outcome.status} = 'pending' THEN now() + make_interval(secs => ${retryInMs / 1000}) ELSE next_attempt_at END,
                 completed_at = CASE WHEN ${outcome.status} = 'pending' THEN NULL ELSE now() END,
                 locked_until = NULL, locked_by = NULL
           WHERE id = ${d.id}::uuid AND locked_by = ${instanceId} AND attempt_count = ${d.attempt}
          RETURNING 1
        ), recorded AS (
          INSERT INTO webhook_attempts (delivery_id, number, started_at, duration_ms, status_code, error, response_body, instance_id)
          SELECT id, ${attempt.number}, ${attempt.startedAt}, ${attempt.durationMs}, ${attempt.statusCode}, ${attempt.error}, ${attempt.responseBody}, ${instanceId}
            FROM webhook_deliveries WHERE id = ${d.id}::uuid
          ON CONFLICT (delivery_id, number) DO NOTHING
          RETURNING 1
        )
        SELECT count(*) AS held FROM settled`;
      return Number(rows[0]?.held ?? 0) === 1;
    },

    /**
     * After an attempt: a success clears the failing streak; a failure starts one (or keeps it).
     * Returns since when it fails and for how long, by the database's clock (every instance's).
     */
    async noteOutcome(webhookId: string, ok: boolean): Promise<{ since: Date; forMs: number } | null> {
      if (ok) {
        await prisma.$executeRaw`UPDATE webhooks SET failing_since = NULL WHERE id = ${webhookId}::uuid AND failing_since IS NOT NULL`;
        return null;
      }
      const rows = await prisma.$queryRaw<Array<{ failing_since: Date; for_ms: number }>>`
        UPDATE webhooks SET failing_since = coalesce(failing_since, now()) WHERE id = ${webhookId}::uuid
        RETURNING failing_since, (extract(epoch FROM now() - failing_since) * 1000)::float8 AS for_ms`;
      return rows[0] ? { since: rows[0].failing_since, forMs: Number(rows[0].for_ms) } : null;
    },

    /** Disables a subscription on keyward's own account; returns whether it was enabled. */
    async disableFor(webhookId: string, reason: string): Promise<boolean> {
      const n = await prisma.$executeRaw`UPDATE webhooks SET is_enabled = false, disabled_reason = ${reason}, updated_at = now() WHERE id = ${webhookId}::uuid AND is_enabled`;
      return n === 1;
    },

    /** Events past the retention, with their deliveries and attempts (cascade). */
    async prune(retentionDays: number): Promise<number> {
      return prisma.$executeRaw`DELETE FROM webhook_events WHERE occurred_at < now() - make_interval(days => ${retentionDays})
        AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id AND d.status = 'pending')`;
    },
  };
}

export type WebhookStore = ReturnType<typeof createWebhookStore>;
