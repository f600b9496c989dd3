import pg from 'pg';
import type { App } from '../../src/app.js';
import { SYSTEM_ACTOR } from '../../src/services/api-keys.js';

export const ADMIN = 1;
export const OPERATOR = 2;
export const READER = 3;

export interface SeededKey {
  id: string;
  secret: string;
  headers: { 'x-api-key': string };
}

let counter = 0;

/** A key created through the service, as the system (no escalation guard in the way). */
export async function seedKey(
  app: App,
  opts: { name?: string; roleIds?: number[]; isEnabled?: boolean; expiresAt?: string; description?: string } = {},
): Promise<SeededKey> {
  const { key, secret } = await app.services.keys.create(SYSTEM_ACTOR, {
    name: opts.name ?? `seed-${++counter}`,
    roleIds: opts.roleIds ?? [],
    isEnabled: opts.isEnabled,
    expiresAt: opts.expiresAt,
    description: opts.description,
  });
  return { id: key.id, secret, headers: { 'x-api-key': secret } };
}

export async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(url: string, text: string, values: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

/** Everything about the keys a client can see, except usage tracking. */
export async function apiVisibleState(url: string) {
  return sql(url, VISIBLE_STATE);
}

export const VISIBLE_STATE = `SELECT k.id, k.name, k.description, k.key_prefix, k.hash, k.is_enabled, k.is_infrastructure_key, k.expires_at,
            k.created_at, k.updated_at, k.version,
            coalesce((SELECT array_agg(role_id ORDER BY role_id) FROM api_key_roles r WHERE r.api_key_id = k.id), '{}') AS roles,
            k.metadata, k.previous_key_prefix, k.previous_hash, k.previous_key_expires_at, k.allowed_cidrs, k.rate_limit_max, k.rate_limit_window_seconds,
            (SELECT count(*)::int FROM api_key_changes c WHERE c.api_key_id = k.id) AS history
       FROM api_keys k ORDER BY k.id`;

export const json = { 'content-type': 'application/json' };
