// How instants and values read in the console: local time with the zone, and JSON for the rest.

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function value(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  return JSON.stringify(v, null, 2);
}

/** A datetime-local input's value for an ISO instant, in the browser's zone. */
export function toLocalInput(iso: string | null): string {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(text: string): string | null {
  if (!text) return null;
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export const DAY_MS = 24 * 3600 * 1000;
/** "Expiring soon": within this many days. */
export const EXPIRING_DAYS = 7;

export type KeyState = 'enabled' | 'disabled' | 'expired';

export function keyState(k: { isEnabled: boolean; expiresAt: string | null }, now = Date.now()): KeyState {
  if (k.expiresAt && new Date(k.expiresAt).getTime() <= now) return 'expired';
  return k.isEnabled ? 'enabled' : 'disabled';
}

export function expiringSoon(k: { expiresAt: string | null }, now = Date.now()): boolean {
  if (!k.expiresAt) return false;
  const t = new Date(k.expiresAt).getTime();
  return t > now && t - now <= EXPIRING_DAYS * DAY_MS;
}
