// A Connect/Express-style middleware on plain node:http request and response objects.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { PROBLEM_CONTENT_TYPE, presentedKeyOf, refusalFor, refusalForError, type Refusal } from './http.js';
import { assertPermissionNames } from './permissions.js';
import type { DigestMemo, Verifier, VerifyResult } from './verifier.js';

/** Per connection: the last key it presented and its digest (see Verifier.cached). */
const MEMO = Symbol('keyward.digestMemo');

export interface KeywardMiddlewareOptions {
  requiredPermissions?: readonly string[];
}

/** The request, once the middleware let it through: `req.keyward` holds keyward's verdict. */
export type KeywardRequest = IncomingMessage & { keyward?: VerifyResult; ip?: string };

export type KeywardMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** The client address: `req.ip` when a framework set it (Express), else the socket's; only an IP address. */
function clientIpOf(req: IncomingMessage): string | undefined {
  const ip = (req as KeywardRequest).ip;
  const address = typeof ip === 'string' ? ip : req.socket.remoteAddress;
  return address !== undefined && isIP(address) !== 0 ? address : undefined;
}

/** What `cached` is asked with; the address is read (a getter) only for a key with an allowlist. */
class CacheAsk {
  readonly requiredPermissions: readonly string[];
  readonly req: IncomingMessage;
  constructor(requiredPermissions: readonly string[], req: IncomingMessage) {
    this.requiredPermissions = requiredPermissions;
    this.req = req;
  }
  get clientIp(): string | undefined {
    return clientIpOf(this.req);
  }
}

function refuse(res: ServerResponse, r: Refusal): void {
  const body = JSON.stringify(r.body);
  res.statusCode = r.body.status;
  for (const [name, value] of Object.entries(r.headers)) res.setHeader(name, value);
  res.setHeader('content-type', PROBLEM_CONTENT_TYPE);
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}

/**
 * `(req, res, next)`: calls next() with `req.keyward` set when the presented key is VALID for
 * `requiredPermissions` and the client address (a key's allowlist); otherwise answers the problem
 * itself (401/403/429/503) and does not call next. Errors that are not keyward's go to next(err).
 * The client address is `req.ip` when a framework set it (Express), else the socket's.
 */
export function keywardMiddleware(verifier: Verifier, options: KeywardMiddlewareOptions = {}): KeywardMiddleware {
  if (!verifier || typeof verifier.verify !== 'function') throw new TypeError('keywardMiddleware: a verifier (from createVerifier) is required');
  const requiredPermissions = Object.freeze([...(options.requiredPermissions ?? [])]);
  assertPermissionNames(requiredPermissions, 'keywardMiddleware: requiredPermissions');
  return (req, res, next) => {
    const presented = presentedKeyOf(req.headers, req.rawHeaders);
    if ('refusal' in presented) return refuse(res, presented.refusal);
    const r = req as KeywardRequest;
    const socket = req.socket as unknown as { [MEMO]?: DigestMemo };
    const hit = verifier.cached(presented.key, new CacheAsk(requiredPermissions, req), (socket[MEMO] ??= {}));
    if (hit) {
      const refusal = refusalFor(hit);
      if (refusal) return refuse(res, refusal);
      r.keyward = hit;
      return next();
    }
    verifier.verify(presented.key, { requiredPermissions, clientIp: clientIpOf(req) }).then(
      (result) => {
        const refusal = refusalFor(result);
        if (refusal) return refuse(res, refusal);
        r.keyward = result;
        next();
      },
      (err: unknown) => {
        const refusal = refusalForError(err);
        if (refusal) return refuse(res, refusal);
        next(err);
      },
    );
  };
}
