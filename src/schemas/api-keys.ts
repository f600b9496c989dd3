import { z } from 'zod';
import { cidrProblem, MAX_ALLOWED_CIDRS } from '../lib/cidr.js';
import { DATE_TIME_RULE, GUID_RULE, wholeNumber } from '../lib/validation.js';
import { text } from './text.js';

// Rule messages are phrases: the validator prefixes the field ("roleIds must not repeat a role id").
export const name = text({ min: 1, max: 200, trim: true });
export const description = text({ max: 1000, multiline: true }).nullable();
export const changeReason = text({ max: 1000, multiline: true }).nullable();

const ROLE_ID_RULE = 'must be a role id (a whole number from 1 to 2147483647)';
const roleId = z.number().int({ error: ROLE_ID_RULE }).positive({ error: ROLE_ID_RULE }).max(2_147_483_647, { error: ROLE_ID_RULE });
const roleIdList = z
  .array(roleId)
  .max(100, { error: 'must list at most 100 role ids' })
  .refine((ids) => new Set(ids).size === ids.length, { message: 'must not repeat a role id' });
/** Depth of a JSON value: 0 for a scalar, 1 for an object or array of scalars, and so on. */
function depthOf(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  let deepest = 0;
  for (const child of Object.values(v)) deepest = Math.max(deepest, depthOf(child));
  return deepest + 1;
}

export const METADATA_MAX_BYTES = 4096;
export const METADATA_MAX_DEPTH = 5;
/**
 * The owner's own data: a JSON object, at most 4 KiB as compact JSON (UTF-8) and 5 levels deep
 * (the object itself is level 1). Returned by GET and verify; searchable by nothing.
 */
export const metadata = z
  .record(z.string(), z.unknown(), { error: 'must be a JSON object (e.g. {"tenantId": "t-42"}), or null for none' })
  .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= METADATA_MAX_BYTES, {
    message: `must be at most ${METADATA_MAX_BYTES} bytes as compact JSON`,
    abort: true,
  })
  .refine((m) => depthOf(m) <= METADATA_MAX_DEPTH, { message: `must nest at most ${METADATA_MAX_DEPTH} levels deep (the object itself is the first)` })
  .meta({ description: 'The owner\'s own data: a JSON object of at most 4 KiB (compact JSON, UTF-8), nested at most 5 levels; returned by GET and verify, searchable by nothing', examples: [{ tenantId: 't-42', plan: 'pro' }] });
const metadataInput = metadata
  .nullable()
  .describe('A JSON object of at most 4 KiB, nested at most 5 levels, or null for none ({}). Replaces the whole object. Absent: unchanged (on create: {})');

/** One canonical CIDR block (lib/cidr.ts says what canonical means). */
const cidrBlock = z.string().superRefine((v, ctx) => {
  const problem = v.length > 64 ? 'must have at most 64 characters' : cidrProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
const cidrList = z
  .array(cidrBlock)
  .max(MAX_ALLOWED_CIDRS, { error: `must list at most ${MAX_ALLOWED_CIDRS} blocks` })
  .refine((blocks) => new Set(blocks).size === blocks.length, { message: 'must not repeat a block' });
/**
 * Where the key may be used from. An array, or — as PowerShell sends a one-element array it
 * unrolled — a single block; null or [] for any address. Absent: unchanged (on create: any).
 */
export const allowedCidrsInput = z
  .xor([cidrList, cidrBlock, z.null()], { error: 'must be an array of CIDR blocks (e.g. ["10.0.0.0/8", "2001:db8::/32"]), or null for any address' })
  .describe(
    `CIDR blocks (IPv4 and IPv6, at most ${MAX_ALLOWED_CIDRS}, canonical: no host bits set, IPv6 in RFC 5952 form) the key may be used from; null or [] for any address. Absent: unchanged (on create: any address)`,
  )
  .meta({ examples: [['10.0.0.0/8', '2001:db8::/32']] });
export const asCidrList = (v: string[] | string | null): string[] => (v === null ? [] : typeof v === 'string' ? [v] : v);

export const RATE_LIMIT_MAX = 1_000_000_000;
export const RATE_LIMIT_WINDOW_MAX_SECONDS = 86_400;
/** A whole number from 1 to `max`, every violation worded as `rule`. */
const wholeFrom1 = (max: number, rule: string) => z.number().int({ error: rule }).min(1, { error: rule }).max(max, { error: rule });
const rateLimitShape = z.strictObject({
  limit: wholeFrom1(RATE_LIMIT_MAX, `must be a whole number from 1 to ${RATE_LIMIT_MAX}`).describe('Requests allowed per window'),
  windowSeconds: wholeFrom1(RATE_LIMIT_WINDOW_MAX_SECONDS, `must be a whole number of seconds from 1 to ${RATE_LIMIT_WINDOW_MAX_SECONDS}`).describe(
    'The window, in seconds (it starts at the first request and resets that long after)',
  ),
});
export const rateLimitInput = rateLimitShape
  .nullable()
  .describe('The key\'s own request limit, counted across instances like the default; null for the server\'s default (RATE_LIMIT_KEY_MAX per RATE_LIMIT_WINDOW_MS). Absent: unchanged')
  .meta({ examples: [{ limit: 1000, windowSeconds: 60 }] });
export type RateLimitSetting = z.infer<typeof rateLimitShape>;

export const roleIds = roleIdList.describe('Ids of the roles the key holds; replaces all assignments');

/**
 * roleIds as PowerShell sends it. Set-JIMApiKey builds `roleIds` from an `if` statement, and
 * PowerShell unrolls statement output: one role arrives as a bare number, none as null. So PUT
 * and PATCH take an array, a single id (meaning [id]) or null (meaning []); exactly one of them.
 */
export const roleIdsLenient = z
  .xor([roleIdList, roleId, z.null()], { error: 'must be an array of role ids (e.g. [1, 3]), a single role id, or null for none' })
  .describe(
    'Ids of the roles the key holds; replaces all assignments. An array, or — as Set-JIMApiKey sends it when PowerShell unrolls a one- or zero-element array — a single id (meaning [id]) or null (meaning no roles).',
  );

/** What roleIds means, whichever form it came in (not a schema transform: it would drop the document's examples). */
export const asRoleIdList = (v: number[] | number | null): number[] => (v === null ? [] : typeof v === 'number' ? [v] : v);

const EARLIEST = Date.UTC(1970, 0, 1);
const LATEST = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
/** RFC 3339 with an offset; any number of fractional digits (JIM sends seven). */
export const timestamp = z.iso
  .datetime({ offset: true, error: DATE_TIME_RULE, abort: true })
  .refine(
    (v) => {
      const t = Date.parse(v.replace(/(\.\d{3})\d+/, '$1'));
      return Number.isFinite(t) && t >= EARLIEST && t <= LATEST;
    },
    { message: 'must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z' },
  );
export const expiresAt = timestamp.nullable().describe('RFC 3339 date-time with offset, or null for no expiry');

/** Any 8-4-4-4-12 hex GUID (as .NET and PostgreSQL accept), not only RFC 9562 variants. */
export const keyId = z.guid({ error: GUID_RULE });
export const idParams = z.object({ id: keyId.describe('The key id') });

export const createBody = z
  .strictObject({
    name,
    description: description.optional(),
    roleIds: roleIds.optional(),
    isEnabled: z.boolean().optional(),
    expiresAt: expiresAt.optional(),
    metadata: metadataInput.optional(),
    allowedCidrs: allowedCidrsInput.optional(),
    rateLimit: rateLimitInput.optional(),
    changeReason: changeReason.optional(),
  })
  .meta({
    id: 'CreateApiKeyRequest',
    description: 'New-JIMApiKey body. Unknown fields are rejected.',
    examples: [{ name: 'ci-deploy', description: 'Deploys from CI', roleIds: [3], expiresAt: '2099-01-01T00:00:00Z', changeReason: 'CHG-1042' }],
  });

export const replaceBody = z
  .strictObject({
    name,
    description: description.optional(),
    roleIds: roleIdsLenient,
    isEnabled: z.boolean(),
    expiresAt: expiresAt.optional(),
    metadata: metadataInput.optional(),
    allowedCidrs: allowedCidrsInput.optional(),
    rateLimit: rateLimitInput.optional(),
    changeReason: changeReason.optional(),
  })
  .meta({
    id: 'ReplaceApiKeyRequest',
    description:
      'Full replacement of JIM\'s fields, as Set-JIMApiKey sends it: an absent description or expiresAt means null. Fields keyward adds beyond JIM (metadata) stay unchanged when absent: a JIM client cannot erase what it does not know.',
    examples: [{ name: 'ci-deploy', description: 'Deploys from CI', roleIds: [3], isEnabled: true, expiresAt: '2099-01-01T00:00:00Z', changeReason: 'CHG-1043' }],
  });

export const patchBody = z
  .strictObject({
    name: name.optional(),
    description: description.optional(),
    roleIds: roleIdsLenient.optional(),
    isEnabled: z.boolean().optional(),
    expiresAt: expiresAt.optional(),
    metadata: metadataInput.optional(),
    allowedCidrs: allowedCidrsInput.optional(),
    rateLimit: rateLimitInput.optional(),
    changeReason: changeReason.optional(),
  })
  .meta({
    id: 'PatchApiKeyRequest',
    description: 'Absent fields stay unchanged; expiresAt: null removes the expiry.',
    examples: [{ isEnabled: false, changeReason: 'CHG-1044: leaver' }],
  });

export const listQuery = z.strictObject({
  name: text({ max: 200 })
    .optional()
    .describe('Name filter: `*` any run, `?` one character, case-insensitive, everything else literal'),
  isEnabled: z.enum(['true', 'false'], { error: 'must be true or false' }).optional(),
  unusedSince: timestamp
    .optional()
    .describe('Idle keys: only those not used since this instant (lastUsedAt earlier, or never used). lastUsedAt is recorded at most every 30 s per key, within LAST_USED_FLUSH_MS'),
  limit: wholeNumber(1, 1000).optional().describe('Page size; without it every match is returned (up to 10,000)'),
  cursor: z.string().max(4096).optional().describe('Opaque cursor from a previous page'),
});

export const GRACE_MAX_SECONDS = 86_400;
const GRACE_RULE = `must be a whole number of seconds from 0 to ${GRACE_MAX_SECONDS} (a day)`;
export const rotateBody = z
  .strictObject({
    gracePeriodSeconds: z
      .number({ error: GRACE_RULE })
      .int({ error: GRACE_RULE })
      .min(0, { error: GRACE_RULE })
      .max(GRACE_MAX_SECONDS, { error: GRACE_RULE })
      .optional()
      .describe('How long the replaced secret keeps working (default 0: it stops at once); never past the key\'s own expiresAt'),
    changeReason: changeReason.optional(),
  })
  .meta({ id: 'RotateApiKeyRequest', description: 'Optional; an empty or absent body rotates with no grace period.', examples: [{ gracePeriodSeconds: 3600, changeReason: 'CHG-1050: yearly rotation' }] });
export type RotateInput = z.infer<typeof rotateBody>;

export const REVOKE_MAX_KEYS = 100;
export const revokeBody = z
  .strictObject({
    keys: z
      .array(z.string().max(4096, { error: 'must have at most 4096 characters' }))
      .min(1, { error: 'must list at least one key' })
      .max(REVOKE_MAX_KEYS, { error: `must list at most ${REVOKE_MAX_KEYS} keys per request` })
      .describe('The secrets found (jim_ak_…); anything that is not a keyward secret is ignored'),
    // 900: the recorded reason ("Reported as leaked (found at: …)") stays within changeReason's 1,000.
    source: text({ max: 900 }).optional().describe('Where they were found (a URL, a commit, a ticket); recorded in each revoked key\'s history'),
  })
  .meta({
    id: 'RevokeApiKeysRequest',
    description: 'Secrets found where they should not be. No authentication: holding a secret is the authority to kill it.',
    examples: [{ keys: ['jim_ak_EXAMPLE_not_a_real_key_EXAMPLE_not_a_real_key'], source: 'https://github.com/example/repo/blob/main/.env' }],
  });
export const revokeResultSchema = z
  .object({
    accepted: z.number().int().describe('How many keys the request listed'),
    message: z.string(),
  })
  .meta({ id: 'RevokeApiKeysResult', description: 'The same for every request of that many keys, whatever was found' });

export const deleteQuery = z.strictObject({ changeReason: changeReason.unwrap().optional() });

export const roleRef = z.object({ id: z.number().int(), name: z.string() }).meta({ id: 'RoleRef' });

export const EXAMPLE_KEY = {
  id: '0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b',
  name: 'ci-deploy',
  description: 'Deploys from CI',
  keyPrefix: 'jim_ak_EXAMPLE_n',
  roles: [{ id: 3, name: 'Reader' }],
  isEnabled: true,
  isInfrastructureKey: false,
  expiresAt: '2027-02-24T10:00:00.000Z',
  createdAt: '2026-11-26T09:00:00.000Z',
  updatedAt: '2026-11-26T09:00:00.000Z',
  lastUsedAt: '2026-11-26T09:30:00.000Z',
  lastUsedFromIp: '192.0.2.10',
  metadata: { tenantId: 't-42', plan: 'pro' },
  previousKeyPrefix: null,
  previousKeyExpiresAt: null,
  allowedCidrs: null,
  rateLimit: null,
};

export const apiKeySchema = z
  .object({
    id: keyId,
    name: z.string(),
    description: z.string().nullable(),
    keyPrefix: z.string().describe('The first 16 characters of the key, stored in clear to find it'),
    roles: z.array(roleRef),
    isEnabled: z.boolean(),
    isInfrastructureKey: z.boolean(),
    expiresAt: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    lastUsedAt: z.string().nullable(),
    lastUsedFromIp: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()).describe('The owner\'s own data ({} when none was set)'),
    previousKeyPrefix: z.string().nullable().describe('While a rotation\'s grace period runs: the prefix of the replaced secret, which still works until previousKeyExpiresAt'),
    previousKeyExpiresAt: z.string().nullable().describe('While a rotation\'s grace period runs: when the replaced secret stops working; null otherwise'),
    allowedCidrs: z.array(z.string()).nullable().describe('CIDR blocks the key may be used from; null: any address'),
    rateLimit: rateLimitShape.nullable().describe('The key\'s own request limit; null: the server\'s default'),
  })
  .meta({ id: 'ApiKey', examples: [EXAMPLE_KEY] });

export const createdApiKeySchema = apiKeySchema
  .extend({ key: z.string().describe('The full secret. Shown in this response only: store it now.') })
  // The example secret is a visible placeholder: no example holds a real key.
  .meta({ id: 'CreatedApiKey', examples: [{ ...EXAMPLE_KEY, lastUsedAt: null, lastUsedFromIp: null, key: 'jim_ak_EXAMPLE_not_a_real_key_EXAMPLE_not_a_real_key' }] });

export const rotatedApiKeySchema = apiKeySchema
  .extend({ key: z.string().describe('The new full secret. Shown in this response only: store it now.') })
  .meta({
    id: 'RotatedApiKey',
    examples: [
      {
        ...EXAMPLE_KEY,
        keyPrefix: 'jim_ak_EXAMPLE_r',
        updatedAt: '2026-12-01T09:00:00.000Z',
        previousKeyPrefix: 'jim_ak_EXAMPLE_n',
        previousKeyExpiresAt: '2026-12-01T10:00:00.000Z',
        key: 'jim_ak_EXAMPLE_rotated_not_a_real_key_EXAMPLE_not_real',
      },
    ],
  });

export const userInfoSchema = z
  .object({
    id: keyId,
    name: z.string(),
    keyPrefix: z.string(),
    roles: z.array(roleRef),
    permissions: z.array(z.string()),
    authMethod: z.literal('api_key'),
  })
  .meta({ id: 'UserInfo' });

export type ApiKeyView = z.infer<typeof apiKeySchema>;
export type CreateInput = z.infer<typeof createBody>;
export type ReplaceInput = z.infer<typeof replaceBody>;
export type PatchInput = z.infer<typeof patchBody>;

const version = wholeNumber(1, 2_147_483_647);

export const historyQuery = z.strictObject({
  limit: wholeNumber(1, 1000).optional().describe('Page size; without it every entry is returned'),
  cursor: z.string().max(4096).optional().describe('Opaque cursor from a previous page'),
});
export const versionParams = z.object({ id: keyId.describe('The key id'), version: version.describe('History version (1, 2, 3…)') });
export const compareQuery = z.strictObject({ fromVersion: version, toVersion: version });

/** The fields a change-history snapshot keeps, in the order a comparison lists them: the key as it was, never its hash or usage. */
export const SNAPSHOT_FIELDS = ['name', 'description', 'keyPrefix', 'roles', 'isEnabled', 'isInfrastructureKey', 'expiresAt', 'metadata', 'allowedCidrs', 'rateLimit'] as const;

export const snapshotSchema = apiKeySchema
  .pick(Object.fromEntries(SNAPSHOT_FIELDS.map((f) => [f, true])) as { [F in (typeof SNAPSHOT_FIELDS)[number]]: true })
  // As the document has always shown it (the key's own description of keyPrefix stays on ApiKey).
  // metadata, allowedCidrs and rateLimit are absent from entries written before keys had them.
  .extend({
    keyPrefix: z.string(),
    metadata: apiKeySchema.shape.metadata.optional(),
    allowedCidrs: apiKeySchema.shape.allowedCidrs.optional(),
    rateLimit: apiKeySchema.shape.rateLimit.optional(),
  })
  .meta({ id: 'ApiKeySnapshot', description: 'The key as it was after the change (before it, for a delete); never the hash' });
export type Snapshot = z.infer<typeof snapshotSchema>;

/** Who made a change (keys' and roles' history alike). */
export const changeActor = z.object({
  type: z.enum(['apiKey', 'system', 'revocationReport']).describe('revocationReport: whoever reported the key\'s secret as leaked (no key of theirs)'),
  id: z.string().nullable(),
  name: z.string().nullable(),
});

/** A history entry (of a key, of a role): the same fields around the thing's own snapshot. */
export const historyEntryOf = <S extends z.ZodType>(snapshot: S) =>
  z.object({
    version: z.number().int(),
    operation: z.enum(['create', 'update', 'rotate', 'revoke', 'delete']).describe('rotate: a new secret (POST …/rotate); revoke: disabled, or a grace period ended, by a leaked-key report (POST /apikeys/revoke)'),
    changedAt: z.string(),
    actor: changeActor,
    changeReason: z.string().nullable(),
    snapshot,
  });

export const historyEntrySchema = historyEntryOf(snapshotSchema).meta({ id: 'ChangeHistoryEntry' });

export const compareSchema = z
  .object({
    fromVersion: z.number().int(),
    toVersion: z.number().int(),
    changes: z.array(z.object({ field: z.string(), from: z.unknown(), to: z.unknown() })),
  })
  .meta({ id: 'ChangeHistoryComparison' });
