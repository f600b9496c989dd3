// Webhook subscriptions: create (the secret returned once), read, change, rotate the secret,
// delete, test, and read the delivery log. The rules of where a URL may point live in
// address-guard.ts; sending in dispatcher.ts.
import { randomUUID } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';
import { AppError, ValidationError } from '../lib/errors.js';
import { pageOf } from '../services/paging.js';
import { ForbiddenTargetError, resolveTarget, urlProblem, type OutboundPolicy, type Resolver } from './address-guard.js';
import type { Dispatcher } from './dispatcher.js';
import { recordEventFor } from './outbox.js';
import { generateSigningSecret, type SecretBox } from './secret-box.js';
import type { CreateWebhookInput, DeliveryView, PatchWebhookInput, WebhookView } from './schemas.js';
import type { WebhookRow } from './store.js';

/** How long a name may take to resolve when a URL is saved; slower, it is checked at delivery only. */
const SAVE_LOOKUP_MS = 2_000;
export const DEFAULT_SECRET_GRACE_SECONDS = 86_400;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function toWebhookView(w: WebhookRow, at = Date.now()): WebhookView {
  const rotating = w.previousSecretExpiresAt !== null && w.previousSecretExpiresAt.getTime() > at;
  return {
    id: w.id,
    url: w.url,
    description: w.description,
    eventTypes: w.eventTypes,
    isEnabled: w.isEnabled,
    disabledReason: w.disabledReason,
    failingSince: iso(w.failingSince),
    previousSecretExpiresAt: rotating ? iso(w.previousSecretExpiresAt) : null,
    createdAt: w.createdAt.toISOString(),
    updatedAt: w.updatedAt.toISOString(),
  };
}

export function createWebhookService(deps: {
  prisma: PrismaClient;
  /** null: WEBHOOK_SECRET_KEY is not set, and every operation answers WEBHOOKS_NOT_CONFIGURED. */
  box: SecretBox | null;
  dispatcher: Dispatcher | null;
  policy: OutboundPolicy;
  resolve: Resolver;
  cursorKey: () => Promise<Buffer>;
}) {
  const { prisma, policy } = deps;

  function ready(): { box: SecretBox; dispatcher: Dispatcher } {
    if (!deps.box || !deps.dispatcher) throw new AppError('WEBHOOKS_NOT_CONFIGURED');
    return { box: deps.box, dispatcher: deps.dispatcher };
  }

  /** The URL's rules, and — when its name resolves in time — the addresses it resolves to. */
  async function requireUrl(url: string) {
    const problem = urlProblem(url, policy);
    if (problem) throw new ValidationError([{ field: 'url', message: problem }]);
    try {
      await Promise.race([resolveTarget(url, policy, deps.resolve), new Promise((r) => setTimeout(r, SAVE_LOOKUP_MS).unref())]);
    } catch (err) {
      if (err instanceof ForbiddenTargetError) throw new ValidationError([{ field: 'url', message: `must not lead to a forbidden address: ${err.message}` }]);
      // Does not resolve (yet): every attempt checks again before it connects.
    }
  }

  async function find(id: string): Promise<WebhookRow> {
    const row = await prisma.webhook.findUnique({ where: { id } });
    if (!row) throw new AppError('WEBHOOK_NOT_FOUND');
    return row;
  }

  async function change(id: string, next: (w: WebhookRow) => { url: string; eventTypes: string[]; description: string | null; isEnabled: boolean }) {
    ready();
    const current = await find(id);
    const target = next(current);
    if (target.url !== current.url) await requireUrl(target.url);
    const enabling = target.isEnabled && !current.isEnabled;
    const n = await prisma.webhook.updateMany({
      where: { id },
      data: {
        ...target,
        // Enabled again by a person, or pointed elsewhere: the failing streak (and keyward's reason) start over.
        ...(enabling ? { disabledReason: null, failingSince: null } : {}),
        ...(target.url !== current.url ? { failingSince: null } : {}),
        ...(!target.isEnabled && current.isEnabled ? { disabledReason: null } : {}),
        updatedAt: new Date(),
      },
    });
    if (!n.count) throw new AppError('WEBHOOK_NOT_FOUND'); // deleted meanwhile
    if (enabling) ready().dispatcher.wake();
    return toWebhookView(await find(id));
  }

  return {
    get configured() {
      return deps.box !== null;
    },

    async list(): Promise<WebhookView[]> {
      ready();
      const rows = await prisma.webhook.findMany({ orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
      return rows.map((r) => toWebhookView(r));
    },

    async get(id: string) {
      ready();
      return toWebhookView(await find(id));
    },

    async create(input: CreateWebhookInput) {
      const { box } = ready();
      await requireUrl(input.url);
      const id = randomUUID();
      const secret = generateSigningSecret();
      const row = await prisma.webhook.create({
        data: {
          id,
          url: input.url,
          description: input.description ?? null,
          eventTypes: input.eventTypes,
          isEnabled: input.isEnabled ?? true,
          secretCiphertext: box.seal(secret, id),
        },
      });
      return { webhook: toWebhookView(row), secret };
    },

    replace: (id: string, input: CreateWebhookInput) =>
      change(id, () => ({ url: input.url, eventTypes: input.eventTypes, description: input.description ?? null, isEnabled: input.isEnabled ?? true })),

    patch: (id: string, input: PatchWebhookInput) =>
      change(id, (w) => ({
        url: input.url ?? w.url,
        eventTypes: input.eventTypes ?? w.eventTypes,
        description: input.description !== undefined ? input.description : w.description,
        isEnabled: input.isEnabled ?? w.isEnabled,
      })),

    setEnabled: (id: string, isEnabled: boolean) => change(id, (w) => ({ url: w.url, eventTypes: w.eventTypes, description: w.description, isEnabled })),

    async remove(id: string) {
      ready();
      const n = await prisma.webhook.deleteMany({ where: { id } });
      if (!n.count) throw new AppError('WEBHOOK_NOT_FOUND');
    },

    /** A new secret; the replaced one signs too (a second signature) for `graceSeconds`. */
    async rotateSecret(id: string, graceSeconds = DEFAULT_SECRET_GRACE_SECONDS) {
      const { box } = ready();
      const secret = generateSigningSecret();
      const at = Date.now();
      const until = graceSeconds > 0 ? new Date(at + graceSeconds * 1000) : null;
      // One statement: the secret replaced is the one in the row now, whatever rotation ran meanwhile.
      const n = await prisma.$executeRaw`
        UPDATE webhooks SET previous_secret_ciphertext = CASE WHEN ${until}::timestamptz IS NULL THEN NULL ELSE secret_ciphertext END,
               previous_secret_expires_at = ${until}::timestamptz, secret_ciphertext = ${box.seal(secret, id)}, updated_at = ${new Date(at)}
         WHERE id = ${id}::uuid`;
      if (!n) throw new AppError('WEBHOOK_NOT_FOUND');
      return { webhook: toWebhookView(await find(id), at), secret };
    },

    /** Sends a `ping` to this subscription now (enabled or not) and answers with the delivery as recorded. */
    async test(id: string): Promise<DeliveryView> {
      const { dispatcher } = ready();
      const hook = await find(id);
      const at = new Date();
      const { deliveryId } = await prisma.$transaction((tx) =>
        recordEventFor(tx, hook.id, 'ping', at, { webhookId: hook.id, url: hook.url, message: 'A test from keyward: if this arrived signed, the subscription works.' }, { instanceId: dispatcher.instanceId, leaseMs: dispatcher.leaseMs }),
      );
      const held = await dispatcher.held(deliveryId);
      if (held) await dispatcher.attempt(held);
      return this.delivery(id, deliveryId);
    },

    async delivery(webhookId: string, deliveryId: string): Promise<DeliveryView> {
      const rows = await prisma.webhookDelivery.findMany({ where: { id: deliveryId, webhookId }, include: { event: true, attempts: { orderBy: { number: 'asc' } } } });
      if (!rows.length) throw new AppError('NOT_FOUND', 'No such delivery for this subscription.');
      return toDeliveryView(rows[0]);
    },

    /** Newest first; 100 a page unless `limit` says otherwise. */
    async deliveries(webhookId: string, opts: { status?: string; limit?: number; cursor?: string }) {
      ready();
      await find(webhookId);
      const { items, next } = await pageOf(
        'webhookDeliveries',
        { limit: opts.limit ?? 100, cursor: opts.cursor },
        {
          signingKey: deps.cursorKey,
          fetch: (after, take) =>
            prisma.webhookDelivery.findMany({
              where: {
                webhookId,
                ...(opts.status ? { status: opts.status } : {}),
                ...(after ? { OR: [{ createdAt: { lt: new Date(after[1]) } }, { createdAt: new Date(after[1]), id: { lt: after[2] } }] } : {}),
              },
              orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
              take,
              include: { event: true, attempts: { orderBy: { number: 'asc' } } },
            }),
          positionOf: (row) => [webhookId, row.createdAt.toISOString(), row.id],
          accept: (p) => p[0] === webhookId,
        },
      );
      return { items: items.map(toDeliveryView), next };
    },
  };
}

type DeliveryRow = {
  id: string;
  eventId: string;
  status: string;
  attemptCount: number;
  nextAttemptAt: Date;
  createdAt: Date;
  completedAt: Date | null;
  event: { type: string; payload: string };
  attempts: Array<{ number: number; startedAt: Date; durationMs: number; statusCode: number | null; error: string | null; responseBody: string | null }>;
};

function toDeliveryView(d: DeliveryRow): DeliveryView {
  return {
    id: d.id,
    eventId: d.eventId,
    eventType: d.event.type,
    status: d.status as DeliveryView['status'],
    attemptCount: d.attemptCount,
    nextAttemptAt: d.status === 'pending' ? d.nextAttemptAt.toISOString() : null,
    createdAt: d.createdAt.toISOString(),
    completedAt: iso(d.completedAt),
    payload: d.event.payload,
    attempts: d.attempts.map((a) => ({ number: a.number, startedAt: a.startedAt.toISOString(), durationMs: a.durationMs, statusCode: a.statusCode, error: a.error, responseBody: a.responseBody })),
  };
}

export type WebhookService = ReturnType<typeof createWebhookService>;
