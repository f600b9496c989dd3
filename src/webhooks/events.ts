// The events keyward sends, and the bodies it sends them in: Standard Webhooks' shape
// ({ type, timestamp, data }), data holding the key as the API shows it (never a secret or hash).
import { randomBytes } from 'node:crypto';
import type { ApiKeyView } from '../schemas/api-keys.js';

export const KEY_EVENT_TYPES = [
  'apikey.created',
  'apikey.updated',
  'apikey.rotated',
  'apikey.deleted',
  'apikey.revoked',
  'apikey.expiring',
  'apikey.expired',
  'apikey.disabled_idle',
] as const;
export type KeyEventType = (typeof KEY_EVENT_TYPES)[number];
/** `ping` goes only to the subscription being tested; nobody subscribes to it. */
export type EventType = KeyEventType | 'ping';

export const EVENT_DESCRIPTIONS: Record<EventType, string> = {
  'apikey.created': 'A key was created (through the API, the CLI or the infrastructure-key bootstrap).',
  'apikey.updated': 'A key was changed: name, description, roles, enabled, expiry, metadata, allowlist or limit.',
  'apikey.rotated': 'A key got a new secret (its id stays); `key.previousKeyExpiresAt` says until when the replaced one works.',
  'apikey.deleted': 'A key was deleted; `key` is what it was.',
  'apikey.revoked': 'A leaked-key report (POST /apikeys/revoke) disabled the key, or ended the grace period of the secret it replaced.',
  'apikey.expiring': 'A key expires within one of the lead times (EXPIRY_WARNING_LEADS, 14 and 1 days by default); sent once per key and lead time.',
  'apikey.expired': 'A key has reached its expiresAt and is refused from now on.',
  'apikey.disabled_idle': 'The idle-key policy (IDLE_KEY_DISABLE_DAYS) disabled a key nobody had used for that many days.',
  ping: 'Sent by POST /webhooks/{id}/test to that subscription only.',
};

/** History operations and the event each one sends (a policy's change names its own). */
export const EVENT_OF_OPERATION: Record<string, KeyEventType> = {
  create: 'apikey.created',
  update: 'apikey.updated',
  rotate: 'apikey.rotated',
  delete: 'apikey.deleted',
  revoke: 'apikey.revoked',
};

export interface EventActor {
  type: string;
  id: string | null;
  name: string | null;
}

/** The actor as events show it: who, never what they may do. */
export const eventActor = (a: EventActor): EventActor => ({ type: a.type, id: a.id, name: a.name });

/** What `data` holds for the key events (`actor`, `changeReason`… only where they apply). */
export interface KeyEventData {
  key: ApiKeyView;
  actor: EventActor;
  changeReason: string | null;
  [extra: string]: unknown;
}

/** The webhook-id: msg_ and 26 characters, sortable by time, the same on every attempt. */
export function newEventId(at = Date.now()): string {
  return `msg_${at.toString(36).padStart(10, '0')}${randomBytes(12).toString('base64url')}`;
}

/** The exact body every attempt sends (and signs). */
export function eventBody(type: EventType, at: Date, data: unknown): string {
  return JSON.stringify({ type, timestamp: at.toISOString(), data });
}
