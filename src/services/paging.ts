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

const cursorShape = z.tuple([z.literal(1), z.string().max(1000), z.uuid()]);

/** An opaque keyset cursor: the last row's sort key. */
export function encodeCursor(pos: { name: string; id: string }): string {
  return Buffer.from(JSON.stringify([1, pos.name, pos.id])).toString('base64url');
}

export function decodeCursor(cursor: string): { name: string; id: string } {
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url');
    const [, name, id] = cursorShape.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    return { name, id };
  } catch {
    throw new ValidationError([{ field: 'cursor', message: 'cursor was not issued by this server' }], 'The cursor is invalid.');
  }
}
