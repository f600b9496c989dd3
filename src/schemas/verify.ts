import { isIP } from 'node:net';
import { z } from 'zod';
import { isPermissionName, PERMISSION_NAME_RULE } from '../auth/permissions.js';
import { apiKeySchema, keyId, metadata, roleRef } from './api-keys.js';

export const VERIFY_CODES = ['VALID', 'NOT_FOUND', 'DISABLED', 'EXPIRED', 'IP_NOT_ALLOWED', 'INSUFFICIENT_PERMISSIONS', 'RATE_LIMITED'] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

export const verifyBody = z
  .strictObject({
    // Any string: a malformed key is an answer (NOT_FOUND), not a bad request.
    key: z.string().max(4096, { error: 'must have at most 4096 characters' }).describe('The key your caller presented (X-API-Key or Bearer)'),
    requiredPermissions: z
      .array(z.string().refine(isPermissionName, { message: PERMISSION_NAME_RULE }))
      .max(100, { error: 'must list at most 100 permissions' })
      .optional()
      .describe('Permissions the key must hold (wildcards in the key\'s roles count: orders.* grants orders.read)'),
    clientIp: z
      .string()
      .refine((v) => isIP(v) !== 0, { message: 'must be an IPv4 or IPv6 address, e.g. 203.0.113.7' })
      .optional()
      .describe(
        'Your caller\'s address: its failure budget, security events and lastUsedFromIp use it (without it, your own address). A key with allowedCidrs is judged by it alone: without it, such a key is IP_NOT_ALLOWED',
      ),
  })
  .meta({
    id: 'VerifyApiKeyRequest',
    description: 'A key another service was presented, and what that service needs it to hold.',
    examples: [{ key: 'jim_ak_EXAMPLE_not_a_real_key_EXAMPLE_not_a_real_key', requiredPermissions: ['orders.read'], clientIp: '203.0.113.7' }],
  });
export type VerifyInput = z.infer<typeof verifyBody>;

export const verifyResultSchema = z
  .object({
    valid: z.boolean().describe('Serve the caller: true only with code VALID'),
    code: z
      .enum(VERIFY_CODES)
      .describe(
        'VALID; NOT_FOUND (malformed, unknown and wrong secret alike, and a rotated-away secret after its grace period); DISABLED; EXPIRED; IP_NOT_ALLOWED (clientIp is outside the key\'s allowedCidrs, or absent); INSUFFICIENT_PERMISSIONS (see missingPermissions); RATE_LIMITED (the key\'s own budget, or its client address\'s failures). Checked in that order once the secret verified',
      ),
    keyId: keyId.optional().describe('Present once the secret verified (every code but NOT_FOUND, and RATE_LIMITED by address)'),
    name: z.string().optional(),
    roles: z.array(roleRef).optional(),
    permissions: z.array(z.string()).optional().describe('What the key\'s roles grant, sorted'),
    expiresAt: z.string().nullable().optional(),
    metadata: metadata.optional(),
    allowedCidrs: apiKeySchema.shape.allowedCidrs.optional().describe('The blocks clientIp must be in; null: any address. Present once the secret verified'),
    rateLimit: apiKeySchema.shape.rateLimit.optional().describe('The key\'s own request limit (null: the server default); a cache must not answer for such a key without asking, or its uses go uncounted'),
    secretExpiresAt: z
      .string()
      .optional()
      .describe('Only for a secret a rotation replaced, still accepted in its grace period: when it stops working (do not cache the answer past it)'),
    missingPermissions: z.array(z.string()).optional().describe('With INSUFFICIENT_PERMISSIONS: the required permissions the key lacks'),
    retryAfterSeconds: z.number().int().optional().describe('With RATE_LIMITED: when to try again'),
  })
  .meta({
    id: 'VerifyApiKeyResult',
    examples: [
      {
        valid: true,
        code: 'VALID',
        keyId: '0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b',
        name: 'shop-frontend',
        roles: [{ id: 101, name: 'orders-reader' }],
        permissions: ['orders.read'],
        expiresAt: '2027-02-24T10:00:00.000Z',
        metadata: { tenantId: 't-42', plan: 'pro' },
        allowedCidrs: null,
        rateLimit: null,
      },
      { valid: false, code: 'NOT_FOUND' },
    ],
  });
export type VerifyResult = z.infer<typeof verifyResultSchema>;
