// The webhook routes' schemas: subscriptions, their deliveries, and the bodies that change them.
import { z } from 'zod';
import { wholeNumber } from '../lib/validation.js';
import { description, keyId } from '../schemas/api-keys.js';
import { text } from '../schemas/text.js';
import { KEY_EVENT_TYPES } from './events.js';

export const URL_MAX = 2048;
export const webhookIdParams = z.object({ id: keyId.describe('The subscription id') });

const eventTypes = z
  .array(z.enum(KEY_EVENT_TYPES, { error: `must be one of ${KEY_EVENT_TYPES.join(', ')}` }), { error: 'must be an array of event types' })
  .min(1, { error: `must name at least one event type (${KEY_EVENT_TYPES.join(', ')})` })
  .refine((a) => new Set(a).size === a.length, { message: 'must not repeat an event type' })
  .describe(`The events to send: ${KEY_EVENT_TYPES.join(', ')}`);

const url = text({ min: 1, max: URL_MAX, trim: true }).describe(
  'Where events are POSTed: https (http only with WEBHOOK_ALLOW_HTTP=true), no user name or password; never a loopback, private, link-local or metadata address (checked now and again, after DNS, on every attempt)',
);

export const createWebhookBody = z
  .strictObject({
    url,
    eventTypes,
    description: description.optional(),
    isEnabled: z.boolean().optional().describe('Default true'),
  })
  .meta({
    id: 'CreateWebhookRequest',
    description: 'A subscription. The signing secret is made by keyward and returned once, in this reply.',
    examples: [{ url: 'https://hooks.example.com/keyward', eventTypes: ['apikey.expiring', 'apikey.revoked'], description: 'Key owners\' alerts' }],
  });
export type CreateWebhookInput = z.infer<typeof createWebhookBody>;

export const replaceWebhookBody = createWebhookBody.meta({
  id: 'ReplaceWebhookRequest',
  description: 'Full replacement: url and eventTypes required, an absent description becomes null, an absent isEnabled true.',
  examples: [{ url: 'https://hooks.example.com/keyward/v2', eventTypes: ['apikey.expiring', 'apikey.revoked'], description: "Key owners' alerts", isEnabled: true }],
});

export const patchWebhookBody = z
  .strictObject({ url: url.optional(), eventTypes: eventTypes.optional(), description: description.optional(), isEnabled: z.boolean().optional() })
  .meta({
    id: 'PatchWebhookRequest',
    description: 'Only the fields sent change. Enabling clears disabledReason and the failing streak.',
    examples: [{ eventTypes: ['apikey.expiring', 'apikey.expired', 'apikey.revoked'] }, { isEnabled: true }],
  });
export type PatchWebhookInput = z.infer<typeof patchWebhookBody>;

export const rotateSecretBody = z
  .strictObject({
    gracePeriodSeconds: wholeNumber(0, 604_800)
      .optional()
      .describe('How long the replaced secret keeps signing too (a second signature); 0 ends it now. Default 86400 (24 hours), at most 7 days'),
  })
  .nullish()
  .meta({ id: 'RotateWebhookSecretRequest', examples: [{ gracePeriodSeconds: 86_400 }] });

const EXAMPLE_WEBHOOK = {
  id: '0f8b3c52-6f0e-4a57-9d5e-2a1f3b4c5d6e',
  url: 'https://hooks.example.com/keyward',
  description: "Key owners' alerts",
  eventTypes: ['apikey.expiring', 'apikey.revoked'],
  isEnabled: true,
  disabledReason: null,
  failingSince: null,
  previousSecretExpiresAt: null,
  createdAt: '2026-12-02T09:00:00.000Z',
  updatedAt: '2026-12-02T09:00:00.000Z',
};

export const webhookSchema = z
  .object({
    id: z.string(),
    url: z.string(),
    description: z.string().nullable(),
    eventTypes: z.array(z.string()),
    isEnabled: z.boolean(),
    disabledReason: z.string().nullable().describe('Why keyward disabled it (410 Gone, failing too long); null otherwise'),
    failingSince: z.string().nullable().describe('The first failed attempt since the last success; null while deliveries succeed'),
    previousSecretExpiresAt: z.string().nullable().describe('While a secret rotation runs: until when the replaced secret signs too'),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Webhook', examples: [EXAMPLE_WEBHOOK] });
export type WebhookView = z.infer<typeof webhookSchema>;

const EXAMPLE_SECRET = 'whsec_EXAMPLEEXAMPLEEXAMPLEEXAMPLE0000';
export const webhookWithSecretSchema = webhookSchema
  .extend({ secret: z.string().describe('The signing secret (whsec_…): shown only in this reply. Give it to your Standard Webhooks verifier.') })
  .meta({ id: 'WebhookWithSecret', examples: [{ ...EXAMPLE_WEBHOOK, secret: EXAMPLE_SECRET }] });

export const attemptSchema = z
  .object({
    number: z.number().int(),
    startedAt: z.string(),
    durationMs: z.number().int(),
    statusCode: z.number().int().nullable().describe('The receiver\'s status; null when no answer came'),
    error: z.string().nullable().describe('Why it failed (timeout, connection refused, a non-2xx status, a forbidden address); null on success'),
    responseBody: z.string().nullable().describe('The start of the answer (at most 1 KiB)'),
  })
  .meta({ id: 'WebhookAttempt' });

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed'] as const;
export const deliverySchema = z
  .object({
    id: z.string(),
    eventId: z.string().describe('The webhook-id header: the same on every attempt, for receivers to deduplicate'),
    eventType: z.string(),
    status: z.enum(DELIVERY_STATUSES).describe('pending (due, in flight or waiting for a retry), succeeded, or failed (no retry left, 410 Gone, or a test ping that failed)'),
    attemptCount: z.number().int(),
    nextAttemptAt: z.string().nullable().describe('While pending: when the next attempt is due'),
    createdAt: z.string(),
    completedAt: z.string().nullable(),
    payload: z.string().describe('The exact body sent (and signed)'),
    attempts: z.array(attemptSchema).describe('Every attempt, oldest first'),
  })
  .meta({ id: 'WebhookDelivery' });
export type DeliveryView = z.infer<typeof deliverySchema>;

export const deliveriesQuery = z.strictObject({
  status: z.enum(DELIVERY_STATUSES, { error: `must be one of ${DELIVERY_STATUSES.join(', ')}` }).optional(),
  limit: wholeNumber(1, 1000).optional().describe('Page size, default 100'),
  cursor: z.string().max(4096).optional(),
});
