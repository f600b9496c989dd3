import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Prisma } from '../generated/prisma/client.js';
import { SECURITY_EVENT_REASONS } from '../lib/errors.js';
import { problemResponses } from '../lib/problem.js';
import { authorize, SECURITY } from '../plugins/auth.js';
import { timestamp } from '../schemas/api-keys.js';
import { text, wholeNumber } from '../schemas/text.js';
import { invalidCursor, nextLink, signCursor, verifyCursor } from '../services/paging.js';
import { UNPAGED_CAP } from '../services/api-keys.js';

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

const cursorShape = z.tuple([z.literal(3), z.string(), z.string().regex(/^\d+$/)]);

type Row = { id: bigint; window_start: Date; key_prefix: string; ip: string; reason: string; count: number; first_seen_at: Date; last_seen_at: Date };

export const securityEventRoutes: FastifyPluginAsyncZod = async (app) => {
  const cursorKey = () => app.services.cursorKey();

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
      const q = req.query;
      const key = q.cursor !== undefined || q.limit !== undefined ? await cursorKey() : null;
      const where: Prisma.Sql[] = [];
      if (q.from) where.push(Prisma.sql`last_seen_at >= ${new Date(q.from)}`);
      if (q.to) where.push(Prisma.sql`first_seen_at <= ${new Date(q.to)}`);
      if (q.reason) where.push(Prisma.sql`reason = ${q.reason}`);
      if (q.ip) where.push(Prisma.sql`ip = ${q.ip}`);
      if (q.cursor !== undefined) {
        const parsed = cursorShape.safeParse(verifyCursor(q.cursor, key!));
        if (!parsed.success) throw invalidCursor();
        where.push(Prisma.sql`(window_start, id) < (${new Date(parsed.data[1])}, ${BigInt(parsed.data[2])})`);
      }
      const limit = q.limit ?? UNPAGED_CAP;
      const rows = await app.prisma.$queryRaw<Row[]>`
        SELECT id, window_start, key_prefix, ip, reason, count, first_seen_at, last_seen_at FROM security_events
        ${where.length ? Prisma.sql`WHERE ${Prisma.join(where, ' AND ')}` : Prisma.empty}
        ORDER BY window_start DESC, id DESC
        LIMIT ${limit + 1}`;
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      if (rows.length > limit && key && last) {
        reply.header('link', nextLink(req.url, q, signCursor([3, last.window_start.toISOString(), String(last.id)], key)));
      }
      reply.header('cache-control', 'no-store');
      return page.map((r) => ({
        windowStart: r.window_start.toISOString(),
        keyPrefix: r.key_prefix,
        ip: r.ip,
        reason: r.reason as (typeof REASONS)[number],
        count: r.count,
        firstSeenAt: r.first_seen_at.toISOString(),
        lastSeenAt: r.last_seen_at.toISOString(),
      }));
    },
  );
};
