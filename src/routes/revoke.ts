// Revoking a leaked key by its secret (POST /apikeys/revoke), as GitHub's credential revocation
// does: whoever holds a secret may kill it, so the route needs no key of its own. It tells the
// reporter nothing — the same 202 and body whatever was found, no sooner than a failed
// authentication is answered — and its argon2 work runs under the authentication's failure
// budgets and lanes, after a budget of reports per client network. README "Revoking a leaked key".
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { clientNetwork } from '../lib/client-ip.js';
import { problemResponses } from '../lib/problem.js';
import { rateLimited } from '../plugins/rate-limit.js';
import { revokeBody, revokeResultSchema } from '../schemas/api-keys.js';
import { createRevocationService } from '../services/revocation.js';

const MESSAGE = 'Thank you. Each listed secret that belongs to a keyward key is disabled (a secret a rotation replaced stops working instead).';

export const revokeRoutes: FastifyPluginAsyncZod<{ failureDelayMs: number }> = async (app, opts) => {
  const revocations = createRevocationService({
    identify: (secret, ip) => app.requestAuth.identifyReported(secret, ip),
    revoke: (keyId, secret, tag, source) => app.services.keys.revokeReported(keyId, secret, tag, source),
    recordWrong: (prefix, ip) => app.services.securityEvents.record(prefix, ip, 'API_KEY_INVALID'),
    log: app.log,
  });
  app.addHook('onClose', async () => revocations.close());
  app.post(
    '/apikeys/revoke',
    {
      schema: {
        tags: ['apikeys'],
        operationId: 'revokeLeakedApiKeys',
        summary: 'Report leaked secrets: each one that verifies is disabled',
        description: [
          'No authentication: holding a secret is the authority to kill it. Send the secrets found (at most 100) and, optionally, where (`source`).',
          'Each secret that verifies disables its key (not deleted: its owner sees why in the change history, operation `revoke`, actor `revocationReport`, with the source). A secret a rotation replaced, still in its grace period, stops working instead, and the key\'s new secret keeps working. When the reply arrives, every instance refuses the revoked secrets — unless the server was too busy to verify one yet: such a secret is tried again every 5 s for 10 minutes.',
          'Always 202 with the same body for the same number of keys, whatever was found, so the route tells nobody whether a key existed. Limited per client address (RATE_LIMIT_REVOKE_MAX per window); the argon2 work is bounded like authentication\'s.',
        ].join('\n\n'),
        security: [],
        body: revokeBody,
        response: { 202: revokeResultSchema.describe('Received'), ...problemResponses(400, 413, 415, 429, 503) },
      },
    },
    async (req, reply) => {
      const limits = app.rateLimits;
      if (limits) {
        const hit = await limits.reportUse(clientNetwork(req.ip));
        if (hit.count > limits.max.revoke) {
          app.metrics.rateLimited('revoke');
          throw rateLimited(limits.max.revoke, hit, 'leaked-key reports from this address');
        }
      }
      const { keys, source } = req.body;
      const { revoked, deferred } = await revocations.report(new Set(keys), req.ip, source);
      // For the operator, never the reporter; counts only, never a secret.
      if (revoked || deferred) req.log.warn({ revoked, deferred, listed: keys.length }, 'leaked-key report revoked keys');
      // As long as a failed authentication takes: the time says no more than the body.
      const wait = opts.failureDelayMs - reply.elapsedTime;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, Math.ceil(wait)));
      reply.header('cache-control', 'no-store');
      return reply.code(202).send({ accepted: keys.length, message: MESSAGE });
    },
  );
};
