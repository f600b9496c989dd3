// Permissions: keyward's own (below) and application permissions that roles created through the
// API may hold for the services that verify keys (`orders.read`, `billing.invoices.write`).
// A name is lower-case words joined by dots; `x.*` grants every name below `x` (`orders.*`
// grants `orders.read` and `orders.items.write`); `*` grants everything, present and future.
export const PERMISSIONS = [
  'apikeys.read',
  'apikeys.verify',
  'apikeys.write',
  'audit.read',
  'metrics.read',
  'roles.read',
  'roles.write',
  'webhooks.read',
  'webhooks.write',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Stored on the Administrator role: every permission, including ones added later. */
export const ALL = '*';

const SEGMENT = '[a-z][a-z0-9_-]*';
/** Two or more segments (`orders.read`), or one or more followed by `.*` (`orders.*`). */
const NAME = new RegExp(`^${SEGMENT}(?:\\.${SEGMENT})+$`);
const WILDCARD = new RegExp(`^${SEGMENT}(?:\\.${SEGMENT})*\\.\\*$`);
export const PERMISSION_NAME_MAX = 100;

/**
 * keyward's own namespaces: a name under them is one of keyward's permissions or the namespace's
 * wildcard, never an application's — or a permission keyward adds later would be granted to
 * whoever held an application permission of that name.
 */
const OWN_NAMESPACES = new Set(PERMISSIONS.map((p) => p.slice(0, p.indexOf('.'))));
const OWN: ReadonlySet<string> = new Set(PERMISSIONS);

/** Whether `p` is a permission a role may hold: `*`, a dotted lower-case name, or one ending in `.*`. */
export function isPermissionName(p: string): boolean {
  if (p === ALL) return true;
  if (p.length > PERMISSION_NAME_MAX || !(NAME.test(p) || WILDCARD.test(p))) return false;
  const ns = p.slice(0, p.indexOf('.'));
  return !OWN_NAMESPACES.has(ns) || OWN.has(p) || p === `${ns}.*`;
}

/** The rule a permission name must follow, as a phrase for error messages. */
export const PERMISSION_NAME_RULE =
  'must be lower-case words (a letter, then letters, digits, - or _) joined by dots, at least two (orders.read), optionally ending in .* for every name below (orders.*), or * for every permission; at most 100 characters; under apikeys., audit., metrics., roles. and webhooks. only keyward\'s own (apikeys.read, apikeys.write, apikeys.verify, audit.read, metrics.read, roles.read, roles.write, webhooks.read, webhooks.write) or the namespace\'s .*';

/**
 * Whether `holder` grants `p`: `*`, `p` itself, or a wildcard above it (`orders.*` for
 * `orders.read`, `orders.items.*` and `orders.*`). Only `*` grants `*`.
 */
export function grants(holder: Set<string>, p: string): boolean {
  if (holder.has(p) || holder.has(ALL)) return true;
  for (let i = p.indexOf('.'); i !== -1; i = p.indexOf('.', i + 1)) {
    if (holder.has(`${p.slice(0, i)}.*`)) return true;
  }
  return false;
}

/**
 * Expands stored role permissions into what they grant: as stored, plus keyward's own
 * permissions that a `*` or a wildcard among them covers (so a listing shows them by name).
 */
export function effectivePermissions(rolePermissions: Iterable<string[]>): Set<string> {
  const out = new Set<string>();
  let wildcards = false;
  for (const perms of rolePermissions) {
    for (const p of perms) {
      out.add(p);
      if (p === ALL || p.endsWith('.*')) wildcards = true;
    }
  }
  if (wildcards) for (const q of PERMISSIONS) if (grants(out, q)) out.add(q);
  return out;
}

/** Whether `holder` grants every permission in `needed`. */
export function covers(holder: Set<string>, needed: Iterable<string>): boolean {
  if (holder.has(ALL)) return true;
  for (const p of needed) if (!grants(holder, p)) return false;
  return true;
}

/** The permissions of `needed` that `holder` does not grant. */
export function missing(holder: Set<string>, needed: Iterable<string>): string[] {
  return [...needed].filter((p) => !grants(holder, p));
}

/** Sorted; "*" (first) when held, followed by what it currently expands to. */
export function listPermissions(set: Set<string>): string[] {
  return [...set].sort();
}
