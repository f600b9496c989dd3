// What the command line prints: aligned tables for people, JSON (--json) for scripts.
import type { ApiKey, CreatedApiKey, Role, RotatedApiKey } from './client.js';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}

/** An instant as the tables show it: RFC 3339 to the second; '-' for none. */
export const when = (iso: string | null) => (iso ? iso.replace(/\.\d+Z$/, 'Z') : '-');
const roleNames = (k: ApiKey) => k.roles.map((r) => r.name).join(', ') || '-';

export function keyTable(keys: ApiKey[]): string {
  if (!keys.length) return '';
  return table(
    ['ID', 'NAME', 'PREFIX', 'ENABLED', 'ROLES', 'EXPIRES', 'LAST USED'],
    keys.map((k) => [k.id, k.name, k.keyPrefix, k.isEnabled ? 'yes' : 'no', roleNames(k), when(k.expiresAt), when(k.lastUsedAt)]),
  );
}

/** One key, a field per line (as PowerShell's Format-List); during a rotation's grace period, the old secret's prefix and end too. */
export function keyDetails(k: ApiKey | CreatedApiKey | RotatedApiKey): string {
  const fields: Array<[string, string]> = [
    ['Id', k.id],
    ['Name', k.name],
    ['Description', k.description ?? '-'],
    ['KeyPrefix', k.keyPrefix],
    ...('key' in k ? ([['Key', k.key]] as Array<[string, string]>) : []),
    // While a rotation's grace period runs (a server without rotation sends neither field).
    ...('previousKeyExpiresAt' in k && k.previousKeyExpiresAt
      ? ([
          ['PreviousKeyPrefix', k.previousKeyPrefix ?? '-'],
          ['PreviousKeyExpiresAt', when(k.previousKeyExpiresAt)],
        ] as Array<[string, string]>)
      : []),
    ['Roles', k.roles.map((r) => `${r.name} (${r.id})`).join(', ') || '-'],
    ['IsEnabled', String(k.isEnabled)],
    ['IsInfrastructureKey', String(k.isInfrastructureKey)],
    ['ExpiresAt', when(k.expiresAt)],
    ['CreatedAt', when(k.createdAt)],
    ['UpdatedAt', when(k.updatedAt)],
    ['LastUsedAt', when(k.lastUsedAt)],
    ['LastUsedFromIp', k.lastUsedFromIp ?? '-'],
    // keyward's own settings, when the key has them (a key without prints as before).
    ...(k.allowedCidrs ? ([['AllowedCidrs', k.allowedCidrs.join(', ')]] as Array<[string, string]>) : []),
    ...(k.rateLimit ? ([['RateLimit', `${k.rateLimit.limit} per ${k.rateLimit.windowSeconds} s`]] as Array<[string, string]>) : []),
  ];
  const width = Math.max(...fields.map(([f]) => f.length));
  return fields.map(([f, v]) => `${f.padEnd(width)} : ${v}`).join('\n') + '\n';
}

export function roleTable(roles: Role[]): string {
  return table(
    ['ID', 'NAME', 'BUILT-IN', 'PERMISSIONS'],
    roles.map((r) => [String(r.id), r.name, r.builtIn ? 'yes' : 'no', r.permissions.join(', ')]),
  );
}

export const json = (value: unknown) => JSON.stringify(value, null, 2) + '\n';
