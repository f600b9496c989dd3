// keyward's permission semantics, for judging a cached verification locally: `*` grants every
// permission; a name ending in `.*` grants every name below it (`orders.*` grants `orders.read`,
// `orders.items.write` and `orders.*` itself); anything else grants only itself.

/** Whether the permissions `held` grant `required`. */
export function grants(held: ReadonlySet<string> | readonly string[], required: string): boolean {
  const set: ReadonlySet<string> = held instanceof Set ? held : new Set(held as readonly string[]);
  if (set.has(required) || set.has('*')) return true;
  for (let i = required.indexOf('.'); i !== -1; i = required.indexOf('.', i + 1)) {
    if (set.has(`${required.slice(0, i)}.*`)) return true;
  }
  return false;
}

/** The permissions of `required` that `held` does not grant, in the order asked for. */
export function missingPermissions(held: ReadonlySet<string> | readonly string[], required: readonly string[]): string[] {
  const set: ReadonlySet<string> = held instanceof Set ? held : new Set(held as readonly string[]);
  return required.filter((p) => !grants(set, p));
}

const SEGMENT = '[a-z][a-z0-9_-]*';
const NAME = new RegExp(`^${SEGMENT}(?:\\.${SEGMENT})+$`);
const WILDCARD = new RegExp(`^${SEGMENT}(?:\\.${SEGMENT})*\\.\\*$`);

/**
 * Whether keyward accepts `p` as a permission name: `*`, lower-case words joined by dots (at least
 * two: `orders.read`), or such words ending in `.*`; at most 100 characters.
 */
export function isPermissionName(p: string): boolean {
  if (p === '*') return true;
  if (typeof p !== 'string' || p.length > 100 || !(NAME.test(p) || WILDCARD.test(p))) return false;
  // keyward's own namespaces hold only keyward's own names (or the namespace's wildcard).
  const ns = p.slice(0, p.indexOf('.'));
  return !KEYWARD_NAMESPACES.has(ns) || KEYWARD_PERMISSIONS.has(p) || p === `${ns}.*`;
}

const KEYWARD_PERMISSIONS: ReadonlySet<string> = new Set(['apikeys.read', 'apikeys.verify', 'apikeys.write', 'audit.read', 'metrics.read', 'roles.read', 'roles.write']);
const KEYWARD_NAMESPACES: ReadonlySet<string> = new Set(['apikeys', 'audit', 'metrics', 'roles']);

/** Throws a TypeError naming the first entry of `required` keyward would refuse (or too many). */
export function assertPermissionNames(required: readonly unknown[], where: string): void {
  if (required.length > 100) throw new TypeError(`${where}: at most 100 required permissions`);
  for (const p of required) {
    if (typeof p !== 'string' || !isPermissionName(p)) {
      throw new TypeError(`${where}: ${JSON.stringify(p)} is not a permission name (lower-case words joined by dots, e.g. orders.read, optionally ending in .*, or *)`);
    }
  }
}
