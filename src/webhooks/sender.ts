// One delivery attempt: a signed POST to an address that was checked, bounded in time and in
// how much of the answer is read. Redirects are not followed (a 3xx is a failed attempt): a
// redirect is the easiest way around a check of the first URL.
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { VERSION } from '../lib/version.js';
import { ForbiddenTargetError, resolveTarget, type OutboundPolicy, type Resolver } from './address-guard.js';

export const RESPONSE_READ_LIMIT = 64 * 1024;
export const RESPONSE_KEPT = 1024;

export interface AttemptResult {
  statusCode: number | null;
  durationMs: number;
  /** Why it failed, in words (null on a 2xx). */
  error: string | null;
  /** What the receiver asked for in Retry-After, in ms. */
  retryAfterMs: number | null;
  responseBody: string | null;
  /** The target is forbidden (SSRF): retrying cannot help until the URL or its DNS changes. */
  forbidden: boolean;
}

export interface OutgoingMessage {
  url: string;
  id: string;
  timestampSeconds: number;
  body: string;
  signature: string;
}

/** Retry-After: seconds, or an HTTP date. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return null;
  if (/^\d{1,9}$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

export async function sendAttempt(message: OutgoingMessage, opts: { policy: OutboundPolicy; resolve: Resolver; timeoutMs: number }): Promise<AttemptResult> {
  const started = performance.now();
  const deadline = Date.now() + opts.timeoutMs;
  const done = (r: Partial<AttemptResult>): AttemptResult => ({
    statusCode: null,
    error: null,
    retryAfterMs: null,
    responseBody: null,
    forbidden: false,
    ...r,
    durationMs: Math.round(performance.now() - started),
  });
  let target: Awaited<ReturnType<typeof resolveTarget>>;
  try {
    target = await withTimeout(resolveTarget(message.url, opts.policy, opts.resolve), opts.timeoutMs, 'DNS lookup');
  } catch (err) {
    if (err instanceof ForbiddenTargetError) return done({ error: err.message, forbidden: true });
    return done({ error: `cannot resolve ${safeHost(message.url)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
  }
  const address = target.addresses[0];
  const family = address.includes(':') ? 6 : 4;
  // The connection goes to the checked address, whatever a second lookup would say now.
  const pinned: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address, family }]);
    else callback(null, address, family);
  };
  const remaining = Math.max(1, deadline - Date.now());
  return new Promise<AttemptResult>((resolve) => {
    const client = target.url.protocol === 'https:' ? https : http;
    const req = client.request(
      target.url,
      {
        method: 'POST',
        lookup: pinned,
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(message.body),
          'user-agent': `keyward-webhooks/${VERSION}`,
          'webhook-id': message.id,
          'webhook-timestamp': String(message.timestampSeconds),
          'webhook-signature': message.signature,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let finished = false;
        const finish = () => {
          if (finished) return;
          finished = true;
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          // PostgreSQL text holds no NUL: a receiver answering binary must not make its attempt unrecordable.
          const text = Buffer.concat(chunks).toString('utf8').slice(0, RESPONSE_KEPT).replace(/\0/g, '\uFFFD');
          resolve(
            done({
              statusCode: status,
              error: status >= 200 && status < 300 ? null : `answered ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`,
              retryAfterMs: retryAfterMs(res.headers['retry-after']),
              responseBody: text || null,
            }),
          );
          res.destroy();
        };
        res.on('data', (c: Buffer) => {
          if (size < RESPONSE_READ_LIMIT) chunks.push(c.subarray(0, RESPONSE_READ_LIMIT - size));
          size += c.length;
          if (size >= RESPONSE_READ_LIMIT) finish(); // enough: the rest is not read
        });
        res.once('end', finish);
        res.once('error', finish);
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`));
    }, remaining);
    req.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(done({ error: err.message.startsWith('no answer') ? err.message : `${err.code ?? 'error'}: ${err.message}` }));
    });
    req.end(message.body);
  });
}

const safeHost = (url: string) => {
  try {
    return new URL(url).host;
  } catch {
    return 'the host';
  }
};

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]);
}
