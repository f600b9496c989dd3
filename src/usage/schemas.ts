// The usage routes' query and reply shapes.
import { z } from 'zod';
import { wholeNumber } from '../lib/validation.js';
import { timestamp } from '../schemas/api-keys.js';
import { USAGE_OUTCOMES } from './outcomes.js';
import { MAX_BUCKETS } from './service.js';

const INTERVAL_NAMES = ['minute', 'hour', 'day'] as const;

const range = {
  from: timestamp.optional().describe('Start of the range (RFC 3339); default: `to` less 24 hours'),
  to: timestamp.optional().describe('End of the range, exclusive; default: now'),
};

export const usageQuery = z.strictObject({
  ...range,
  interval: z.enum(INTERVAL_NAMES, { error: `must be one of ${INTERVAL_NAMES.join(', ')}` }).optional().describe(`Bucket size (default hour), aligned in UTC; at most ${MAX_BUCKETS} buckets`),
});

export const topQuery = z.strictObject({
  ...range,
  limit: wholeNumber(1, 100).optional().describe('How many keys (default 10)'),
});

const count = z.number().int().min(0);
export const outcomeCounts = z
  .object(Object.fromEntries(USAGE_OUTCOMES.map((o) => [o, count])) as Record<(typeof USAGE_OUTCOMES)[number], typeof count>)
  .describe('Uses by outcome: VALID (served), DISABLED, EXPIRED, INSUFFICIENT_PERMISSIONS, RATE_LIMITED (the key\'s own limit), IP_NOT_ALLOWED')
  .meta({ id: 'UsageCounts' });

const EXAMPLE_COUNTS = { VALID: 118, DISABLED: 0, EXPIRED: 0, INSUFFICIENT_PERMISSIONS: 2, RATE_LIMITED: 0, IP_NOT_ALLOWED: 0 };

export const keyUsageSchema = z
  .object({
    keyId: z.string(),
    from: z.string().describe('The range actually answered: `from` rounded down to the interval'),
    to: z.string().describe('`to` rounded up to the interval (exclusive)'),
    interval: z.enum(INTERVAL_NAMES),
    buckets: z
      .array(z.object({ start: z.string(), total: count, counts: outcomeCounts }).meta({ id: 'UsageBucket' }))
      .describe('Every bucket of the range, oldest first, empty ones included'),
    totals: z.object({ total: count, counts: outcomeCounts }),
  })
  .meta({
    id: 'KeyUsage',
    examples: [
      {
        keyId: '0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b',
        from: '2026-12-01T10:00:00.000Z',
        to: '2026-12-01T12:00:00.000Z',
        interval: 'hour',
        buckets: [
          { start: '2026-12-01T10:00:00.000Z', total: 0, counts: { ...EXAMPLE_COUNTS, VALID: 0, INSUFFICIENT_PERMISSIONS: 0 } },
          { start: '2026-12-01T11:00:00.000Z', total: 120, counts: EXAMPLE_COUNTS },
        ],
        totals: { total: 120, counts: EXAMPLE_COUNTS },
      },
    ],
  });

export const topUsageSchema = z
  .object({
    from: z.string(),
    to: z.string(),
    keys: z
      .array(z.object({ keyId: z.string(), name: z.string(), keyPrefix: z.string(), total: count, counts: outcomeCounts }).meta({ id: 'KeyUsageTotal' }))
      .describe('Busiest first; keys with no use in the range are not listed'),
  })
  .meta({
    id: 'TopKeys',
    examples: [
      {
        from: '2026-11-30T12:00:00.000Z',
        to: '2026-12-01T12:00:00.000Z',
        keys: [{ keyId: '0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b', name: 'ci-deploy', keyPrefix: 'jim_ak_EXAMPLE_n', total: 120, counts: EXAMPLE_COUNTS }],
      },
    ],
  });
