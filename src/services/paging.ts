// Paging, once, for every list: keyset order, `limit` + 1 rows asked for to know whether more
// remain, and an opaque cursor (the last row's position, signed with a key every instance
// shares) carried in a `Link: <…>; rel="next"` header. Without `limit` (and cursor) a list is
// every match up to UNPAGED_CAP, as JIM's clients expect, and carries no cursor.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../lib/errors.js';

/** The most a list returns without `limit`. */
export const UNPAGED_CAP = 10_000;

/** Each list's cursor: its kind number (so a cursor of one list is never taken by another) and its position's shape. */
export const CURSOR_KINDS = {
  keys: { kind: 1, position: z.tuple([z.string(), z.guid()]) },
  history: { kind: 2, position: z.tuple([z.guid(), z.number().int().positive()]) },
  securityEvents: { kind: 3, position: z.tuple([z.iso.datetime(), z.string().regex(/^\d+$/)]) },
  roleHistory: { kind: 4, position: z.tuple([z.number().int().positive(), z.number().int().positive()]) },
  webhookDeliveries: { kind: 5, position: z.tuple([z.guid(), z.iso.datetime(), z.guid()]) },
} as const;
type Kinds = typeof CURSOR_KINDS;
export type Position<K extends keyof Kinds> = z.infer<Kinds[K]['position']>;

const MAC_LENGTH = 16;

export const invalidCursor = () =>
  new ValidationError([{ field: 'cursor', message: 'is not one this server issued: follow the Link header of the previous page' }]);

const mac = (payload: Buffer, key: Buffer) => createHmac('sha256', key).update(payload).digest().subarray(0, MAC_LENGTH);

function sign(values: unknown[], key: Buffer): string {
  const payload = Buffer.from(JSON.stringify(values));
  return Buffer.concat([mac(payload, key), payload]).toString('base64url');
}

function verify<K extends keyof Kinds>(kind: K, cursor: string, key: Buffer): Position<K> {
  let values: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url');
    const raw = Buffer.from(cursor, 'base64url');
    const payload = raw.subarray(MAC_LENGTH);
    const given = raw.subarray(0, MAC_LENGTH);
    if (given.length !== MAC_LENGTH || !timingSafeEqual(given, mac(payload, key))) throw new Error('bad signature');
    values = JSON.parse(payload.toString('utf8'));
  } catch {
    throw invalidCursor();
  }
  const [k, ...position] = Array.isArray(values) ? values : [];
  const parsed = CURSOR_KINDS[kind].position.safeParse(position);
  if (k !== CURSOR_KINDS[kind].kind || !parsed.success) throw invalidCursor();
  return parsed.data as Position<K>;
}

/**
 * One page of a list. `fetch(after, take)` returns rows in the list's order starting after
 * `after` (null: from the start); `positionOf` gives a row's position. `accept` may refuse a
 * position that is well-formed but not this list's (another key's history).
 */
export async function pageOf<K extends keyof Kinds, Row>(
  kind: K,
  opts: { limit?: number; cursor?: string },
  deps: {
    signingKey: () => Promise<Buffer>;
    fetch: (after: Position<K> | null, take: number) => Promise<Row[]>;
    positionOf: (row: Row) => Position<K>;
    accept?: (position: Position<K>) => boolean;
  },
): Promise<{ items: Row[]; next: string | null; started: boolean }> {
  const paged = opts.limit !== undefined || opts.cursor !== undefined;
  const key = paged ? await deps.signingKey() : null;
  let after: Position<K> | null = null;
  if (opts.cursor !== undefined) {
    after = verify(kind, opts.cursor, key!);
    if (deps.accept && !deps.accept(after)) throw invalidCursor();
  }
  const limit = opts.limit ?? UNPAGED_CAP;
  const rows = await deps.fetch(after, limit + 1);
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  const next = rows.length > limit && key && last !== undefined ? sign([CURSOR_KINDS[kind].kind, ...deps.positionOf(last)], key) : null;
  return { items, next, started: after === null };
}

/**
 * PowerShell `-like` wildcards to a SQL LIKE pattern: `*` any run, `?` one character,
 * everything else literal (`%`, `_` and the escape character itself are escaped).
 */
export function wildcardToLike(pattern: string): string {
  let out = '';
  for (const ch of pattern) {
    if (ch === '*') out += '%';
    else if (ch === '?') out += '_';
    else if (ch === '%' || ch === '_' || ch === '\\') out += `\\${ch}`;
    else out += ch;
  }
  return out;
}

/**
 * RFC 8288 `Link: <…>; rel="next"` for the request's own path, keeping its query parameters
 * (filters, limit) and replacing the cursor.
 */
export function nextLink(url: string, query: Record<string, unknown>, cursor: string): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && k !== 'cursor') params.set(k, String(v));
  params.set('cursor', cursor);
  return `<${url.split('?')[0]}?${params}>; rel="next"`;
}
