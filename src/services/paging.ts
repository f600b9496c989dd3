import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../lib/errors.js';

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

const cursorShape = z.tuple([z.literal(1), z.string(), z.guid()]);
const MAC_LENGTH = 16;

export const invalidCursor = () =>
  new ValidationError([{ field: 'cursor', message: 'is not one this server issued: follow the Link header of the previous page' }]);

/** Signs any JSON-able position (the first element names its kind, so cursors do not cross). */
export function signCursor(values: unknown[], key: Buffer): string {
  const payload = Buffer.from(JSON.stringify(values));
  return Buffer.concat([mac(payload, key), payload]).toString('base64url');
}

export function verifyCursor(cursor: string, key: Buffer): unknown {
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url');
    const raw = Buffer.from(cursor, 'base64url');
    const payload = raw.subarray(MAC_LENGTH);
    const given = raw.subarray(0, MAC_LENGTH);
    if (given.length !== MAC_LENGTH || !timingSafeEqual(given, mac(payload, key))) throw new Error('bad signature');
    return JSON.parse(payload.toString('utf8'));
  } catch {
    throw invalidCursor();
  }
}

const mac = (payload: Buffer, key: Buffer) => createHmac('sha256', key).update(payload).digest().subarray(0, MAC_LENGTH);

/**
 * An opaque keyset cursor: the last row's sort key, signed with a key every instance shares, so
 * a cursor this server did not issue is refused (400) instead of being taken as a position.
 */
export function encodeCursor(pos: { name: string; id: string }, key: Buffer): string {
  return signCursor([1, pos.name, pos.id], key);
}

export function decodeCursor(cursor: string, key: Buffer): { name: string; id: string } {
  const parsed = cursorShape.safeParse(verifyCursor(cursor, key));
  if (!parsed.success) throw invalidCursor();
  return { name: parsed.data[1], id: parsed.data[2] };
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
