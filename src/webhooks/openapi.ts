// The document's `webhooks` section (OpenAPI 3.1): what keyward POSTs to a subscription, one
// entry per event, each with its payload's schema and an example, and the signature headers.
import { EXAMPLE_KEY } from '../schemas/api-keys.js';
import { EVENT_DESCRIPTIONS, KEY_EVENT_TYPES, type EventType } from './events.js';

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const nullableString = { type: ['string', 'null'] };
const actor = {
  type: 'object',
  description: 'Who made the change: an apiKey (id and name of the key used), system (keyward itself: a policy, the bootstrap), or revocationReport (a leaked-key report)',
  properties: { type: { type: 'string', enum: ['apiKey', 'system', 'revocationReport'] }, id: nullableString, name: nullableString },
  required: ['type', 'id', 'name'],
};

/** What `data` carries beyond key, actor and changeReason, per event. */
const EXTRA: Partial<Record<EventType, { properties: Json; example: Json }>> = {
  'apikey.expiring': {
    properties: {
      expiresAt: { type: 'string' },
      leadTime: { type: 'string', description: 'The lead time this warning is for (14d, 1d…)' },
      leadTimeSeconds: { type: 'integer' },
      expiresInSeconds: { type: 'integer' },
    },
    example: { expiresAt: EXAMPLE_KEY.expiresAt, leadTime: '14d', leadTimeSeconds: 1_209_600, expiresInSeconds: 1_209_540 },
  },
  'apikey.expired': { properties: { expiredAt: { type: 'string' } }, example: { expiredAt: EXAMPLE_KEY.expiresAt } },
  'apikey.disabled_idle': {
    properties: { idleDays: { type: 'integer' }, lastUsedAt: { ...nullableString, description: 'null: never used (idle since its creation)' } },
    example: { idleDays: 90, lastUsedAt: '2026-08-01T09:30:00.000Z' },
  },
};

const SIGNATURE_HEADERS = [
  { name: 'webhook-id', in: 'header', required: true, description: 'The event id (msg_…): the same on every attempt; deduplicate on it', schema: { type: 'string' } },
  { name: 'webhook-timestamp', in: 'header', required: true, description: 'Seconds since the epoch when this attempt was sent; refuse ones far from your clock (5 minutes is the usual tolerance)', schema: { type: 'string' } },
  {
    name: 'webhook-signature',
    in: 'header',
    required: true,
    description: 'v1,<base64 HMAC-SHA256 of "webhook-id.webhook-timestamp.body" keyed with the secret after whsec_>; two, space-separated, while a secret rotation runs',
    schema: { type: 'string' },
  },
];

function payloadSchema(type: EventType): Json {
  const extra = EXTRA[type];
  const data: Json =
    type === 'ping'
      ? { type: 'object', properties: { webhookId: { type: 'string' }, url: { type: 'string' }, message: { type: 'string' } }, required: ['webhookId', 'url', 'message'] }
      : {
          type: 'object',
          properties: {
            key: { ...ref('ApiKey'), description: type === 'apikey.deleted' ? 'The key as it was' : 'The key as the API shows it after the event (never a secret or hash)' },
            actor,
            changeReason: nullableString,
            ...(type.startsWith('apikey.') && !['apikey.expiring', 'apikey.expired'].includes(type) ? { historyVersion: { type: 'integer', description: 'The change-history entry this event is' } } : {}),
            ...extra?.properties,
          },
          required: ['key', 'actor', 'changeReason', ...Object.keys(extra?.properties ?? {})],
        };
  return {
    type: 'object',
    properties: { type: { type: 'string', const: type }, timestamp: { type: 'string', description: 'When the event happened' }, data },
    required: ['type', 'timestamp', 'data'],
  };
}

function example(type: EventType): Json {
  const timestamp = '2026-12-02T09:00:00.000Z';
  if (type === 'ping') return { type, timestamp, data: { webhookId: '0f8b3c52-6f0e-4a57-9d5e-2a1f3b4c5d6e', url: 'https://hooks.example.com/keyward', message: 'A test from keyward: if this arrived signed, the subscription works.' } };
  const system = type === 'apikey.expiring' || type === 'apikey.expired' || type === 'apikey.disabled_idle';
  const actorExample = system ? { type: 'system', id: null, name: 'system' } : type === 'apikey.revoked' ? { type: 'revocationReport', id: null, name: 'leaked-key report' } : { type: 'apiKey', id: '5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f', name: 'admin' };
  const key = { ...EXAMPLE_KEY, isEnabled: !(type === 'apikey.revoked' || type === 'apikey.disabled_idle') };
  return {
    type,
    timestamp,
    data: {
      key,
      actor: actorExample,
      changeReason: type === 'apikey.revoked' ? 'Reported as leaked (found at: https://github.com/example/repo/commit/abc)' : type === 'apikey.disabled_idle' ? 'Disabled by the idle-key policy (IDLE_KEY_DISABLE_DAYS=90): last used 2026-08-01T09:30:00.000Z' : system ? null : 'CHG-1042',
      ...(system && type !== 'apikey.disabled_idle' ? {} : { historyVersion: 2 }),
      ...EXTRA[type]?.example,
    },
  };
}

/** Adds `webhooks` to the document: one POST per event type, as a receiver sees it. */
export function addWebhookDocs<T extends Json>(doc: T): T {
  const webhooks: Json = {};
  for (const type of [...KEY_EVENT_TYPES, 'ping'] as EventType[]) {
    webhooks[type] = {
      post: {
        operationId: `webhook_${type.replace(/\W/g, '_')}`,
        summary: type,
        description: `${EVENT_DESCRIPTIONS[type]} Signed as Standard Webhooks specifies: verify with any Standard Webhooks library and the subscription's whsec_ secret. Answer 2xx within WEBHOOK_TIMEOUT_MS; anything else is retried (Retry-After honoured), 410 disables the subscription.`,
        tags: ['webhooks'],
        // Sent by keyward to your receiver: no key of yours, the signature proves the sender.
        security: [],
        parameters: SIGNATURE_HEADERS,
        requestBody: { required: true, content: { 'application/json': { schema: payloadSchema(type), examples: { [type]: { value: example(type) } } } } },
        responses: { '200': { description: 'Received (any 2xx)' }, '410': { description: 'Gone: keyward disables the subscription' } },
      },
    };
  }
  return { ...doc, webhooks };
}
