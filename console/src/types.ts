// The API's shapes as the console reads them (openapi/openapi.json is the contract).

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  code?: string;
  detail?: string;
  errors?: Array<{ field: string; message: string }>;
}

export interface RoleRef {
  id: number;
  name: string;
}

export interface RateLimit {
  limit: number;
  windowSeconds: number;
}

export interface ApiKey {
  id: string;
  name: string;
  description: string | null;
  keyPrefix: string;
  roles: RoleRef[];
  isEnabled: boolean;
  isInfrastructureKey: boolean;
  expiresAt: string | null;
  createdAt: string;
  updatedAt: string;
  lastUsedAt: string | null;
  lastUsedFromIp: string | null;
  metadata: Record<string, unknown>;
  previousKeyPrefix: string | null;
  previousKeyExpiresAt: string | null;
  allowedCidrs: string[] | null;
  rateLimit: RateLimit | null;
}

export type CreatedApiKey = ApiKey & { key: string };

export interface UserInfo {
  id: string;
  name: string;
  keyPrefix: string;
  roles: RoleRef[];
  permissions: string[];
  authMethod: string;
}

export interface Role {
  id: number;
  name: string;
  description: string | null;
  builtIn: boolean;
  permissions: string[];
  createdAt: string;
  updatedAt: string;
}

export interface HistoryEntry {
  version: number;
  operation: string;
  changedAt: string;
  actor: { type: string; id: string | null; name: string | null };
  changeReason: string | null;
  snapshot: Record<string, unknown>;
}

export interface Comparison {
  fromVersion: number;
  toVersion: number;
  changes: Array<{ field: string; from: unknown; to: unknown }>;
}

export interface SecurityEvent {
  windowStart: string;
  keyPrefix: string;
  ip: string;
  reason: string;
  count: number;
  firstSeenAt: string;
  lastSeenAt: string;
}

export interface Webhook {
  id: string;
  url: string;
  description: string | null;
  eventTypes: string[];
  isEnabled: boolean;
  disabledReason: string | null;
  failingSince: string | null;
  previousSecretExpiresAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export type WebhookWithSecret = Webhook & { secret: string };

export interface WebhookDelivery {
  id: string;
  eventId: string;
  eventType: string;
  status: string;
  attemptCount: number;
  nextAttemptAt: string | null;
  createdAt: string;
  completedAt: string | null;
  payload: string;
  attempts: Array<{ number: number; startedAt: string; durationMs: number; statusCode: number | null; error: string | null; responseBody: string | null }>;
}

/** The outcomes usage counts (GET /apikeys/{id}/usage, /usage/top). */
export const OUTCOMES = ['VALID', 'DISABLED', 'EXPIRED', 'INSUFFICIENT_PERMISSIONS', 'RATE_LIMITED', 'IP_NOT_ALLOWED'] as const;
export type Outcome = (typeof OUTCOMES)[number];
export type OutcomeCounts = Record<Outcome, number>;

export interface UsageSeries {
  keyId: string;
  from: string;
  to: string;
  interval: 'minute' | 'hour' | 'day';
  buckets: Array<{ start: string; total: number; counts: OutcomeCounts }>;
  totals: { total: number; counts: OutcomeCounts };
}

export interface TopUsage {
  from: string;
  to: string;
  keys: Array<{ keyId: string; name: string; keyPrefix: string; total: number; counts: OutcomeCounts }>;
}

export const WEBHOOK_EVENTS = [
  'apikey.created',
  'apikey.updated',
  'apikey.rotated',
  'apikey.deleted',
  'apikey.revoked',
  'apikey.expiring',
  'apikey.expired',
  'apikey.disabled_idle',
] as const;
