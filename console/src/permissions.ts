// What the signed-in key may do, by the server's own wildcard rules (README "Roles"): `*` grants
// everything, `ns.*` every name below `ns.`. Only used to decide what to offer: the server still
// decides every request.

export function grants(held: readonly string[], needed: string): boolean {
  return held.some((p) => p === '*' || p === needed || (p.endsWith('.*') && needed.startsWith(p.slice(0, -1))));
}

export type Can = (permission: string) => boolean;
