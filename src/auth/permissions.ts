export const PERMISSIONS = ['apikeys.read', 'apikeys.write', 'audit.read', 'metrics.read', 'roles.read'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Stored on the Administrator role: every permission, including ones added later. */
export const ALL = '*';

/** Expands stored role permissions (which may contain "*") into concrete ones. */
export function effectivePermissions(rolePermissions: Iterable<string[]>): Set<string> {
  const out = new Set<string>();
  for (const perms of rolePermissions) {
    for (const p of perms) {
      if (p === ALL) {
        out.add(ALL);
        PERMISSIONS.forEach((q) => out.add(q));
      } else {
        out.add(p);
      }
    }
  }
  return out;
}

/** Whether `holder` has every permission in `needed` (a "*" holder has all, present and future). */
export function covers(holder: Set<string>, needed: Set<string>): boolean {
  if (holder.has(ALL)) return true;
  for (const p of needed) if (!holder.has(p)) return false;
  return true;
}

/** Sorted; "*" (first) when held, followed by what it currently expands to. */
export function listPermissions(set: Set<string>): string[] {
  return [...set].sort();
}
