import { z } from 'zod';
import { isPermissionName, PERMISSION_NAME_RULE } from '../auth/permissions.js';
import { wholeNumber } from '../lib/validation.js';
import { changeReason, description, historyEntryOf, historyQuery } from './api-keys.js';
import { text } from './text.js';

export const roleId = wholeNumber(1, 2_147_483_647);
export const roleIdParams = z.object({ id: roleId.describe('The role id') });

export const roleName = text({ min: 1, max: 100, trim: true }).describe('Unique, whatever its case; 1–100 characters');

/** What a value was, for a message naming it: quoted, shortened (a permission name is no secret). */
const quoted = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v) : String(v));

export const permissionList = z
  .array(z.string({ error: 'must be a permission name (a string such as "orders.read")' }))
  .max(100, { error: 'must list at most 100 permissions' })
  .superRefine((perms, ctx) => {
    const seen = new Set<string>();
    perms.forEach((p, i) => {
      if (!isPermissionName(p)) ctx.addIssue({ code: 'custom', path: [i], message: `(${quoted(p)}) ${PERMISSION_NAME_RULE}` });
      else if (seen.has(p)) ctx.addIssue({ code: 'custom', path: [i], message: `(${quoted(p)}) repeats a permission already listed` });
      seen.add(p);
    });
  })
  .describe(
    'Permission names: keyward\'s own (apikeys.read, apikeys.write, apikeys.verify, audit.read, metrics.read, roles.read, roles.write, webhooks.read, webhooks.write) or your application\'s — lower-case words joined by dots (orders.read, billing.invoices.write); a trailing `.*` grants every name below it (orders.*); `*` grants everything. You can only grant what your own key holds.',
  );

const EXAMPLE_ROLE = {
  id: 101,
  name: 'orders-reader',
  description: 'Reads orders in the orders API',
  builtIn: false,
  permissions: ['orders.read'],
  createdAt: '2026-11-26T09:00:00.000Z',
  updatedAt: '2026-11-26T09:00:00.000Z',
};

export const roleSchema = z
  .object({
    id: z.number().int(),
    name: z.string(),
    description: z.string().nullable(),
    builtIn: z.boolean().describe('Built-in roles (ids below 100) cannot be changed or deleted'),
    permissions: z
      .array(z.string())
      .describe('What the role grants, sorted: "*" (Administrator) means every permission, including ones added later, and is followed by keyward\'s own it covers; so is a wildcard such as apikeys.*'),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Role', examples: [EXAMPLE_ROLE] });
export type RoleView = z.infer<typeof roleSchema>;

export const createRoleBody = z
  .strictObject({
    name: roleName,
    description: description.optional(),
    permissions: permissionList,
    changeReason: changeReason.optional(),
  })
  .meta({
    id: 'CreateRoleRequest',
    description: 'A role of your own. Unknown fields are rejected.',
    examples: [{ name: 'orders-reader', description: 'Reads orders in the orders API', permissions: ['orders.read'], changeReason: 'CHG-2001' }],
  });

export const replaceRoleBody = createRoleBody.meta({
  id: 'ReplaceRoleRequest',
  description: 'Full replacement: name and permissions required; an absent description becomes null.',
  examples: [{ name: 'orders-reader', description: 'Reads orders', permissions: ['orders.read', 'orders.items.read'] }],
});

export const patchRoleBody = z
  .strictObject({
    name: roleName.optional(),
    description: description.optional(),
    permissions: permissionList.optional(),
    changeReason: changeReason.optional(),
  })
  .meta({ id: 'PatchRoleRequest', description: 'Absent fields stay unchanged; permissions replaces the whole list.', examples: [{ permissions: ['orders.*'], changeReason: 'CHG-2002' }] });

export const deleteRoleQuery = z.strictObject({ changeReason: changeReason.unwrap().optional() });

export type CreateRoleInput = z.infer<typeof createRoleBody>;
export type PatchRoleInput = z.infer<typeof patchRoleBody>;

export const roleHistoryEntrySchema = historyEntryOf(
  z
    .object({ name: z.string(), description: z.string().nullable(), permissions: z.array(z.string()).describe('As stored (wildcards not expanded)') })
    .meta({ id: 'RoleSnapshot', description: 'The role as it was after the change (before it, for a delete)' }),
)
  .meta({ id: 'RoleChangeHistoryEntry' });

export { historyQuery as roleHistoryQuery };
