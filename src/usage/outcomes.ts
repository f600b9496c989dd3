// The outcomes a key's use is counted under, in the order of their counters (and their columns).
export const USAGE_OUTCOMES = ['VALID', 'DISABLED', 'EXPIRED', 'INSUFFICIENT_PERMISSIONS', 'RATE_LIMITED', 'IP_NOT_ALLOWED'] as const;
export type UsageOutcome = (typeof USAGE_OUTCOMES)[number];

/** A counter's index by outcome. */
export const OUTCOME_INDEX: Readonly<Record<UsageOutcome, number>> = Object.fromEntries(USAGE_OUTCOMES.map((o, i) => [o, i])) as Record<UsageOutcome, number>;

export type OutcomeCounts = Record<UsageOutcome, number>;

export const zeroCounts = (): OutcomeCounts => ({ VALID: 0, DISABLED: 0, EXPIRED: 0, INSUFFICIENT_PERMISSIONS: 0, RATE_LIMITED: 0, IP_NOT_ALLOWED: 0 });

export const INTERVALS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
export type UsageInterval = keyof typeof INTERVALS;
