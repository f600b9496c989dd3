import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { SECURITY_EVENT_REASONS } from '../lib/errors.js';
import { problemResponses } from '../lib/problem.js';
import { authorize, SECURITY } from '../plugins/auth.js';
import { timestamp } from '../schemas/api-keys.js';
import { wholeNumber } from '../lib/validation.js';
import { text } from '../schemas/text.js';
import { nextLink } from '../services/paging.js';

/** From the catalogue; RATE_LIMITED: refused by a budget before its key was checked. */
const REASONS = SECURITY_EVENT_REASONS;

const query = z.strictObject({
  from: timestamp.optional().describe('Only aggregates seen at or after this instant'),
  to: timestamp.optional().describe('Only aggregates that began at or before this instant'),
  reason: z.enum(REASONS, { error: `must be one of ${REASONS.join(', ')}` }).optional(),
  ip: text({ min: 1, max: 64 }).optional().describe('Client address; IPv6 clients are recorded per /64, e.g. 2001:db8:1:2::/64'),
  limit: wholeNumber(1, 1000).optional().describe('Page size; without it every match (up to 10,000)'),
  cursor: z.string().max(4096).optional(),
});

const eventSchema = z
  .object({
    windowStart: z.string().describe('Start of the 15-minute window'),
    keyPrefix: z.string().describe('The presented key\'s prefix when it matched a stored key, otherwise "unknown"'),
    ip: z.string(),
    reason: z.enum(REASONS),
    count: z.number().int(),
    firstSeenAt: z.string(),
    lastSeenAt: z.string(),
  })
  .meta({ id: 'SecurityEvent' });

export const securityEventRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/security-events',
    {
      onRequest: authorize('audit.read'),
      schema: {
        tags: ['audit'],
        operationId: 'listSecurityEvents',
        summary: 'Failed authentications',
        description:
          'Failed authentications aggregated per (key prefix or "unknown", client IP, reason) and 15-minute window, newest first. Paged as the key list is (`limit`, `cursor`, `Link`).',
        security: SECURITY,
        querystring: query,
        response: { 200: z.array(eventSchema).describe('Newest window first'), ...problemResponses(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const { items, next } = await app.services.securityEvents.list(req.query);
      if (next) reply.header('link', nextLink(req.url, req.query, next));
      reply.header('cache-control', 'no-store');
      return items as Array<(typeof items)[number] & { reason: (typeof REASONS)[number] }>;
    },
  );
};
