// "90d"-style lifetimes for --expires-in (the command line and npm run keys:create).
const UNITS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** The instant `text` (e.g. 30m, 12h, 90d, 4w) after `now`, as RFC 3339; null when malformed. */
export function expiresIn(text: string, now = Date.now()): string | null {
  const m = /^(\d{1,6})([mhdw])$/.exec(text.trim());
  if (!m) return null;
  return new Date(now + Number(m[1]) * UNITS[m[2] as keyof typeof UNITS]).toISOString();
}

export const EXPIRES_IN_HINT = 'use a number and a unit, e.g. 30m, 12h, 90d, 4w';
