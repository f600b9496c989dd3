// "90d"-style lifetimes for --expires-in (the command line and npm run keys:create).
const UNITS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** The instant `text` (e.g. 30m, 12h, 90d, 4w) after `now`, as RFC 3339; null when malformed. */
export function expiresIn(text: string, now = Date.now()): string | null {
  const m = /^(\d{1,6})([mhdw])$/.exec(text.trim());
  if (!m) return null;
  return new Date(now + Number(m[1]) * UNITS[m[2] as keyof typeof UNITS]).toISOString();
}

export const EXPIRES_IN_HINT = 'use a number and a unit, e.g. 30m, 12h, 90d, 4w';

const SPAN_UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** Milliseconds in a span such as 250ms, 5s, 30m, 2h, 14d, 1w; null when malformed. */
export function spanMs(text: string): number | null {
  const m = /^(\d{1,9})(ms|s|m|h|d|w)$/.exec(text.trim());
  return m ? Number(m[1]) * SPAN_UNITS[m[2] as keyof typeof SPAN_UNITS] : null;
}

/** A span as the shortest exact text in days at most: 1209600000 → "14d", 300000 → "5m". */
export function spanText(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms >= SPAN_UNITS[unit] && ms % SPAN_UNITS[unit] === 0) return `${ms / SPAN_UNITS[unit]}${unit}`;
  return `${ms}ms`;
}
