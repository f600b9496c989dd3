import { randomBytes } from 'node:crypto';

export const KEY_PREFIX = 'jim_ak_';
/** Characters of a key stored in clear to find its row; the rest is only ever hashed. */
export const KEY_PREFIX_LENGTH = 16;

/** `jim_ak_` + 64 lowercase hex: 256 bits from the CSPRNG, as JIM generates them. */
export function generateKey(): string {
  return `${KEY_PREFIX}${randomBytes(32).toString('hex')}`;
}

/**
 * What a client may present: `jim_ak_` then visible ASCII, 32–256 characters in all. JIM accepts
 * infrastructure keys in that shape, so 64 hex is not demanded on input.
 */
export function isWellFormedKey(value: string): boolean {
  return value.length >= 32 && value.length <= 256 && value.startsWith(KEY_PREFIX) && /^[\x21-\x7e]+$/.test(value);
}

export function keyPrefixOf(key: string): string {
  return key.slice(0, KEY_PREFIX_LENGTH);
}
