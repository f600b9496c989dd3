// Service-to-service authentication: another service asks whether to serve the key its caller
// presented (POST /apikeys/verify), and hears, on an event stream, which keys changed so the
// verifications it caches follow every change (GET /apikeys/verify/events). Both need
// apikeys.verify (the Verifier role). README "Verifying keys in other services".
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { missing } from '../auth/permissions.js';
import type { Principal } from '../auth/principal.js';
import { AppError, RateLimitedError } from '../lib/errors.js';
import { problemResponses } from '../lib/problem.js';
import { authorize, principalOf, SECURITY } from '../plugins/auth.js';
import { verifyBody, verifyResultSchema, type VerifyCode, type VerifyResult } from '../schemas/verify.js';

const TAGS = ['verify'];

const REFUSALS: Record<string, VerifyCode> = {
  API_KEY_DISABLED: 'DISABLED',
  API_KEY_EXPIRED: 'EXPIRED',
  IP_NOT_ALLOWED: 'IP_NOT_ALLOWED',
  RATE_LIMITED: 'RATE_LIMITED',
};

/** What a verdict says about a verified key; made once per cached principal (it is immutable). */
const described = new WeakMap<Principal, ReturnType<typeof describeNow>>();
function describe(principal: Principal) {
  let d = described.get(principal);
  if (!d) described.set(principal, (d = describeNow(principal)));
  return d;
}

function describeNow(principal: Principal) {
  return {
    keyId: principal.id,
    name: principal.name,
    roles: principal.roles,
    permissions: principal.permissionList,
    expiresAt: principal.expiresAt === null ? null : new Date(principal.expiresAt).toISOString(),
    metadata: principal.metadata,
    allowedCidrs: principal.allowedCidrs,
    rateLimit: principal.rateLimit,
    ...(principal.secretExpiresAt !== null ? { secretExpiresAt: new Date(principal.secretExpiresAt).toISOString() } : {}),
  };
}

/** The answer for a verified (or refused) presented key. */
function resultOf(outcome: { principal?: Principal; refusal?: AppError }, required: string[] | undefined): VerifyResult {
  const { principal, refusal } = outcome;
  if (refusal) {
    const code = REFUSALS[refusal.code] ?? 'NOT_FOUND';
    const retryAfter = refusal instanceof RateLimitedError ? Number(refusal.response.headers?.['retry-after']) : undefined;
    return { valid: false, code, ...(principal ? describe(principal) : {}), ...(retryAfter ? { retryAfterSeconds: retryAfter } : {}) };
  }
  const lacking = required ? missing(principal!.permissions, required) : [];
  if (lacking.length) return { valid: false, code: 'INSUFFICIENT_PERMISSIONS', ...describe(principal!), missingPermissions: lacking };
  return { valid: true, code: 'VALID', ...describe(principal!) };
}

function noStore(reply: FastifyReply) {
  reply.header('cache-control', 'no-store');
}

export const verifyRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/apikeys/verify',
    {
      // The caller is a gateway: its own per-key budget would throttle every client behind it.
      // The presented key's budget is spent instead.
      onRequest: authorize('apikeys.verify', { ownBudget: false }),
      schema: {
        tags: TAGS,
        operationId: 'verifyApiKey',
        summary: 'Verify a key presented to another service',
        description:
          'Always 200 for a well-formed request: `valid`, `code`, and once the secret verified the key\'s id, name, roles, permissions, expiry and metadata. Checked in this order once the secret verified: DISABLED, EXPIRED, IP_NOT_ALLOWED (against `clientIp` only), RATE_LIMITED (the key\'s own limit), INSUFFICIENT_PERMISSIONS. Served from the same cache, argon2 bound and flood protection as keys presented to keyward itself; the presented key\'s own rate limit applies (not the caller\'s), its lastUsedAt/lastUsedFromIp record `clientIp`, and failures are security events under its prefix. 400/401/403 concern only your own request and key.',
        security: SECURITY,
        body: verifyBody,
        response: { 200: verifyResultSchema.describe('The verdict'), ...problemResponses(400, 401, 403, 429, 503) },
      },
    },
    async (req, reply) => {
      const { key, requiredPermissions, clientIp } = req.body;
      // The allowlist judges the presented key's client, never the gateway asking.
      const outcome = await app.requestAuth.verifyPresented(key, clientIp ?? req.ip, reply, clientIp ?? null);
      noStore(reply);
      const result = resultOf(outcome, requiredPermissions);
      // The presented key's use, under its verdict (a key whose secret did not verify is no one's).
      if (result.keyId !== undefined) app.services.usage.countOutcome(result.keyId, result.code);
      return result;
    },
  );

  app.get(
    '/apikeys/verify/events',
    {
      exposeHeadRoute: false, // a HEAD of an endless stream would never end either
      onRequest: authorize('apikeys.verify'),
      schema: {
        tags: TAGS,
        operationId: 'streamApiKeyInvalidations',
        summary: 'Stream of key changes, for services that cache verifications',
        description: [
          'Server-Sent Events. `reset` first (`{"reason":"connected","heartbeatMs":5000}`); `invalidate` (`{"keyIds":[…]}`, ids only) whenever a key changes, is re-roled, or one of its roles changes, or it is deleted; `heartbeat` (`{}`) every heartbeatMs.',
          'A `reset` with any other reason (`listener-lost`, `unknown-change`, `shutting-down`) means this instance cannot vouch that nothing was missed: it ends the stream; forget every cached verification and reconnect. Cache nothing while not connected.',
          'Any instance serves it; 503 while this instance is not hearing changes itself. A change to the key you connect with ends the stream (reconnect: it is re-authenticated).',
        ].join('\n\n'),
        security: SECURITY,
        response: {
          200: {
            description: 'The event stream (never ends by itself)',
            content: {
              'text/event-stream': {
                schema: z
                  .string()
                  .describe('Server-Sent Events: per event an `event:` line (reset, invalidate or heartbeat), a `data:` line of JSON, and a blank line')
                  .meta({
                    examples: [
                      'event: reset\ndata: {"reason":"connected","heartbeatMs":5000}\n\nevent: invalidate\ndata: {"keyIds":["0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b"]}\n\nevent: heartbeat\ndata: {}\n\n',
                    ],
                  }),
              },
            },
          },
          ...problemResponses(401, 403, 503),
        },
      },
    },
    async (req: FastifyRequest, reply: FastifyReply) => {
      const hub = app.services.verifyEvents;
      if (!hub.accepting) throw new AppError('SERVICE_UNAVAILABLE', 'This instance is not hearing key changes right now, so it cannot stream them; retry shortly.');
      const principal = principalOf(req);
      reply.hijack();
      const res = reply.raw;
      // The client may have gone while its key was being verified: then 'close' has fired already.
      if (req.raw.destroyed || res.destroyed || !res.socket || res.socket.destroyed) return;
      res.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no', // nginx: pass events through as they come
        'x-content-type-options': 'nosniff',
      });
      // Heartbeats keep it busy; the server's idle timeout is for request-response connections.
      req.raw.socket.setTimeout(0);
      req.raw.socket.setNoDelay(true);
      const unsubscribe = hub.subscribe({
        keyId: principal.id,
        send(event, data, written) {
          if (res.writableEnded || res.destroyed) written?.();
          else res.write(`event: ${event}\ndata: ${data}\n\n`, () => written?.()); // called on error too
          return res.writableLength;
        },
        end: () => res.end(),
        // A client that stopped reading keeps its buffer and its socket: cut it.
        cut: () => res.destroy(),
      });
      res.on('close', unsubscribe);
      // A stream lives no longer than the key it was opened with.
      if (principal.expiresAt !== null) {
        const timer = setTimeout(unsubscribe, Math.max(0, principal.expiresAt - Date.now()));
        timer.unref();
        res.on('close', () => clearTimeout(timer));
      }
    },
  );
};
