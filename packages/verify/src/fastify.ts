// The fastify plugin: routes that declare `config: { keyward: { requiredPermissions: [...] } }`
// are checked before their body is read; the others are left alone. Registered without
// encapsulation (like fastify-plugin), so it covers the routes of the scope it is registered in.
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { PROBLEM_CONTENT_TYPE, presentedKeyOf, refusalFor, refusalForError, type Refusal } from './http.js';
import { assertPermissionNames } from './permissions.js';
import type { DigestMemo, Verifier, VerifyResult } from './verifier.js';

/** Per connection: the last key it presented and its digest (see Verifier.cached). */
const MEMO = Symbol('keyward.digestMemo');

/** What a route declares in `config.keyward`. `{}` requires a valid key and no permission. */
export interface KeywardRouteConfig {
  requiredPermissions?: readonly string[];
}

export interface KeywardFastifyOptions {
  verifier: Verifier;
  /** Close the verifier when fastify closes. Default false. */
  closeVerifier?: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    keyward?: KeywardRouteConfig;
  }
  interface FastifyRequest {
    /** keyward's verdict on the presented key (VALID), on routes that declare `config.keyward`; null elsewhere. */
    keyward: VerifyResult | null;
  }
}

function checkRouteConfig(route: RouteOptions): void {
  const cfg = (route.config as { keyward?: unknown } | undefined)?.keyward;
  if (cfg === undefined) return;
  const perms = (cfg as { requiredPermissions?: unknown } | null)?.requiredPermissions;
  if (!cfg || typeof cfg !== 'object' || (perms !== undefined && !Array.isArray(perms))) {
    throw new TypeError(`${route.method} ${route.url}: config.keyward must be { requiredPermissions?: string[] }`);
  }
  if (perms !== undefined) assertPermissionNames(perms as unknown[], `${route.method} ${route.url}: config.keyward.requiredPermissions`);
}

/** The client address fastify computed (`request.ip`, trustProxy applied), when it is an IP address. */
function clientIpOf(request: FastifyRequest): string | undefined {
  const ip = request.ip;
  return typeof ip === 'string' && isIP(ip) !== 0 ? ip : undefined;
}

/**
 * What `cached` is asked with: the route's requirement and the client address. The address is a
 * getter on the prototype: `cached` reads it only for a key with an allowlist, so the other hits
 * never compute `request.ip` (with trustProxy, a walk of X-Forwarded-For).
 */
class CacheAsk {
  readonly requiredPermissions: readonly string[] | undefined;
  readonly request: FastifyRequest;
  constructor(requiredPermissions: readonly string[] | undefined, request: FastifyRequest) {
    this.requiredPermissions = requiredPermissions;
    this.request = request;
  }
  get clientIp(): string | undefined {
    return clientIpOf(this.request);
  }
}

function refuse(reply: FastifyReply, r: Refusal): void {
  reply.code(r.body.status).headers(r.headers).header('content-type', PROBLEM_CONTENT_TYPE).send(JSON.stringify(r.body));
}

function keywardPlugin(app: FastifyInstance, opts: KeywardFastifyOptions, done: (err?: Error) => void): void {
  const verifier = opts?.verifier;
  if (!verifier || typeof verifier.verify !== 'function') {
    done(new TypeError('keywardFastify: options.verifier (from createVerifier) is required'));
    return;
  }
  app.decorateRequest('keyward', null);
  // Each protected route gets the check as its own first onRequest hook, with its requirement
  // bound: unprotected routes pay nothing, and no request reads its route's options.
  app.addHook('onRoute', (route) => {
    checkRouteConfig(route);
    const cfg = (route.config as { keyward?: KeywardRouteConfig } | undefined)?.keyward;
    if (cfg === undefined) return;
    // Frozen once checked, so the verifier checks it once rather than on every request.
    if (cfg.requiredPermissions) Object.freeze(cfg.requiredPermissions);
    const own = (request: FastifyRequest, reply: FastifyReply, next: (err?: Error) => void) => check(request, reply, next, cfg);
    route.onRequest = [own, ...(route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest])] as RouteOptions['onRequest'];
  });
  function check(request: FastifyRequest, reply: FastifyReply, next: (err?: Error) => void, cfg: KeywardRouteConfig) {
    const presented = presentedKeyOf(request.headers, request.raw.rawHeaders);
    if ('refusal' in presented) {
      refuse(reply, presented.refusal);
      return;
    }
    // A cache hit, synchronously (nearly every request); otherwise ask keyward.
    const socket = request.raw.socket as unknown as { [MEMO]?: DigestMemo };
    const hit = verifier.cached(presented.key, new CacheAsk(cfg.requiredPermissions, request), (socket[MEMO] ??= {}));
    if (hit) {
      const r = refusalFor(hit);
      if (r) return refuse(reply, r);
      request.keyward = hit;
      return next();
    }
    verifier.verify(presented.key, { requiredPermissions: cfg.requiredPermissions ?? [], clientIp: clientIpOf(request) }).then(
      (result) => {
        const r = refusalFor(result);
        if (r) return refuse(reply, r);
        request.keyward = result;
        next();
      },
      (err: unknown) => {
        const r = refusalForError(err);
        if (!r) return next(err as Error);
        const e = err as Error & { status?: number; code?: string };
        request.log.warn({ keyward: { error: e.name, status: e.status, code: e.code, message: e.message } }, 'API key not checked: keyward unavailable');
        refuse(reply, r);
      },
    );
  }
  if (opts.closeVerifier) app.addHook('onClose', (_app, closeDone) => {
    verifier.close();
    closeDone();
  });
  done();
}

// What fastify-plugin would add: no encapsulation, a name, the fastify major it needs.
Object.defineProperties(keywardPlugin, {
  [Symbol.for('skip-override')]: { value: true },
  [Symbol.for('fastify.display-name')]: { value: '@keyward/verify' },
  [Symbol.for('plugin-meta')]: { value: { name: '@keyward/verify', fastify: '5.x' } },
});

/** The fastify plugin: `app.register(keywardFastify, { verifier })`. */
export const keywardFastify: FastifyPluginCallback<KeywardFastifyOptions> = keywardPlugin;
export default keywardFastify;
export type { Refusal, ProblemBody, ProblemCode } from './http.js';
