// The outbox: an event is written in the transaction of the change that causes it, with one
// delivery row per enabled subscription that wants it — so a committed change never loses its
// event, a rolled-back one never sends one, and a change nobody subscribed to writes nothing.
import { randomUUID } from 'node:crypto';
import type { Prisma } from '../generated/prisma/client.js';
import { eventBody, newEventId, type EventType } from './events.js';

type Tx = Prisma.TransactionClient;

/** Records `type` for every subscription that wants it; returns how many deliveries it made. */
export async function recordEvent(tx: Tx, type: EventType, at: Date, data: unknown): Promise<number> {
  const id = newEventId(at.getTime());
  const rows = await tx.$queryRaw<Array<{ n: bigint }>>`
    WITH targets AS (
      SELECT id FROM webhooks WHERE is_enabled AND ${type} = ANY(event_types)
    ), event AS (
      INSERT INTO webhook_events (id, type, payload, occurred_at)
      SELECT ${id}, ${type}, ${eventBody(type, at, data)}, ${at} WHERE EXISTS (SELECT 1 FROM targets)
      RETURNING id
    ), made AS (
      INSERT INTO webhook_deliveries (id, webhook_id, event_id, next_attempt_at)
      SELECT gen_random_uuid(), targets.id, event.id, now() FROM targets, event
      RETURNING 1
    )
    SELECT count(*) AS n FROM made`;
  return Number(rows[0]?.n ?? 0);
}

/**
 * An event for one subscription only, whatever it subscribed to (the test ping), its delivery
 * already claimed by `claim.instanceId` for its first attempt, so no poller takes it from the
 * caller who waits for it. Returns the delivery's id.
 */
export async function recordEventFor(
  tx: Tx,
  webhookId: string,
  type: EventType,
  at: Date,
  data: unknown,
  claim: { instanceId: string; leaseMs: number },
): Promise<{ deliveryId: string; eventId: string }> {
  const eventId = newEventId(at.getTime());
  const deliveryId = randomUUID();
  await tx.$executeRaw`INSERT INTO webhook_events (id, type, payload, occurred_at) VALUES (${eventId}, ${type}, ${eventBody(type, at, data)}, ${at})`;
  await tx.$executeRaw`INSERT INTO webhook_deliveries (id, webhook_id, event_id, next_attempt_at, attempt_count, locked_by, locked_until)
    VALUES (${deliveryId}::uuid, ${webhookId}::uuid, ${eventId}, now(), 1, ${claim.instanceId}, now() + make_interval(secs => ${claim.leaseMs / 1000}))`;
  return { deliveryId, eventId };
}
