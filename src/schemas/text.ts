import { z } from 'zod';

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_EXCEPT_WHITESPACE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

const codePoints = (s: string) => [...s].length;
const wellFormed = (s: string) => (s as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * Text as people mean it: counted in code points, never a lone surrogate, no control characters
 * (tab, CR and LF allowed only where `multiline`).
 */
export function text(opts: { min?: number; max: number; multiline?: boolean; trim?: boolean; label: string }) {
  const base = opts.trim ? z.string().trim() : z.string();
  const min = opts.min ?? 0;
  return base
    .refine(wellFormed, { message: `${opts.label} contains an unpaired surrogate (invalid Unicode)`, abort: true })
    .refine((s) => !(opts.multiline ? CONTROL_EXCEPT_WHITESPACE : CONTROL).test(s), {
      message: `${opts.label} must not contain control characters${opts.multiline ? ' (tab and newlines are allowed)' : ''}`,
      abort: true,
    })
    .refine((s) => codePoints(s) >= min, {
      message: min === 1 ? `${opts.label} must not be blank` : `${opts.label} must have at least ${min} characters`,
      abort: true,
    })
    .refine((s) => codePoints(s) <= opts.max, { message: `${opts.label} must have at most ${opts.max} characters` })
    .meta({ description: `${min ? `${min}–` : 'up to '}${opts.max} characters (Unicode code points)` });
}
