// What the fastify plugin and the middleware share: reading the presented key from the headers
// (keyward's own rules) and turning a verdict or an error into an RFC 9457 problem.
import type { IncomingHttpHeaders } from 'node:http';
import { KeywardError } from './errors.js';
import type { VerifyResult } from './verifier.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export type ProblemCode =
  | 'UNAUTHENTICATED'
  | 'API_KEY_INVALID'
  | 'API_KEY_DISABLED'
  | 'API_KEY_EXPIRED'
  | 'FORBIDDEN'
  | 'IP_NOT_ALLOWED'
  | 'RATE_LIMITED'
  | 'KEYWARD_UNAVAILABLE';

export interface ProblemBody {
  type: 'about:blank';
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
}

/** A refusal: the body and the headers to send with it. */
export interface Refusal {
  body: ProblemBody;
  headers: Record<string, string>;
}

const TITLES: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 429: 'Too Many Requests', 503: 'Service Unavailable' };
const CHALLENGE = 'ApiKey header="X-API-Key", Bearer';
const CHALLENGE_INVALID = 'ApiKey header="X-API-Key", Bearer error="invalid_token"';

function refusal(status: number, code: ProblemCode, detail: string, headers: Record<string, string> = {}): Refusal {
  return { body: { type: 'about:blank', title: TITLES[status] ?? 'Error', status, detail, code }, headers };
}

function repeatsKeyHeader(rawHeaders: readonly string[]): boolean {
  let authorization = 0;
  let apiKey = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') authorization++;
    else if (name.length === 9 && name.toLowerCase() === 'x-api-key') apiKey++;
  }
  return authorization > 1 || apiKey > 1;
}

/**
 * The key a request presents, by keyward's rules: `X-API-Key` (trimmed) or `Authorization: Bearer
 * <key>`; both present and different, or either repeated, is refused (401 API_KEY_INVALID); none
 * (or another scheme alone) is 401 UNAUTHENTICATED.
 */
export function presentedKeyOf(headers: IncomingHttpHeaders, rawHeaders?: readonly string[]): { key: string } | { refusal: Refusal } {
  const apiKey = headers['x-api-key'];
  const authorization = headers.authorization;
  if (Array.isArray(apiKey) || Array.isArray(authorization) || (rawHeaders !== undefined && repeatsKeyHeader(rawHeaders))) {
    return { refusal: refusal(401, 'API_KEY_INVALID', 'Send one API key, once.', { 'www-authenticate': CHALLENGE_INVALID }) };
  }
  let bearer: string | undefined;
  if (authorization !== undefined) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (m) bearer = m[1];
    else if (apiKey === undefined) {
      return { refusal: refusal(401, 'UNAUTHENTICATED', 'Only Bearer authorization is supported: send the API key as X-API-Key or Authorization: Bearer <key>.', { 'www-authenticate': CHALLENGE }) };
    }
  }
  const key = apiKey?.trim();
  if (key !== undefined && bearer !== undefined && key !== bearer) {
    return { refusal: refusal(401, 'API_KEY_INVALID', 'X-API-Key and Authorization carry different keys.', { 'www-authenticate': CHALLENGE_INVALID }) };
  }
  const found = key ?? bearer;
  if (found === undefined || found === '') {
    return { refusal: refusal(401, 'UNAUTHENTICATED', 'This route needs an API key: send it as X-API-Key or Authorization: Bearer <key>.', { 'www-authenticate': CHALLENGE }) };
  }
  return { key: found };
}

/** The refusal for a verdict, or null when it is VALID. */
export function refusalFor(result: VerifyResult): Refusal | null {
  switch (result.code) {
    case 'VALID':
      return result.valid ? null : refusal(401, 'API_KEY_INVALID', 'The API key is not valid.', { 'www-authenticate': CHALLENGE_INVALID });
    case 'DISABLED':
      return refusal(401, 'API_KEY_DISABLED', 'The API key is disabled.', { 'www-authenticate': CHALLENGE_INVALID });
    case 'EXPIRED':
      return refusal(401, 'API_KEY_EXPIRED', 'The API key has expired.', { 'www-authenticate': CHALLENGE_INVALID });
    case 'IP_NOT_ALLOWED':
      // The key is fine, the address is not: 403 like a missing permission, and no challenge.
      return refusal(403, 'IP_NOT_ALLOWED', 'The API key may not be used from this address.');
    case 'INSUFFICIENT_PERMISSIONS': {
      const missing = result.missingPermissions ?? [];
      const names = missing.length > 0 ? missing.join(', ') : 'a permission';
      return refusal(403, 'FORBIDDEN', `The API key lacks the permission${missing.length === 1 ? '' : 's'} this route needs: ${names}.`);
    }
    case 'RATE_LIMITED': {
      const retry = Math.max(1, Math.ceil(result.retryAfterSeconds ?? 1));
      return refusal(429, 'RATE_LIMITED', `Too many requests with this API key: retry in ${retry} s.`, { 'retry-after': String(retry) });
    }
    default:
      return refusal(401, 'API_KEY_INVALID', 'The API key is not valid.', { 'www-authenticate': CHALLENGE_INVALID });
  }
}

/** The refusal for a KeywardError (keyward unreachable, or refusing this service): 503; null for any other error. */
export function refusalForError(err: unknown): Refusal | null {
  if (!(err instanceof KeywardError)) return null;
  return refusal(503, 'KEYWARD_UNAVAILABLE', 'The API key cannot be checked right now: keyward is unavailable. Retry shortly.', { 'retry-after': '1' });
}
