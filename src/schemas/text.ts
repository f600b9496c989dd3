import { z } from 'zod';

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_EXCEPT_WHITESPACE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

const codePoints = (s: string) => [...s].length;
const wellFormed = (s: string) => (s as string & { isWellFormed(): boolean }).isWellFormed();

/**
 * Text as people mean it: counted in code points, never a lone surrogate, no control characters
 * (tab, CR and LF allowed only where `multiline`). Messages are rule phrases: the validator puts
 * the field's name in front ("name must not be blank").
 */
export function text(opts: { min?: number; max: number; multiline?: boolean; trim?: boolean }) {
  const base = opts.trim ? z.string().trim() : z.string();
  const min = opts.min ?? 0;
  return base
    .refine(wellFormed, { message: 'must not contain unpaired surrogates (it is not valid Unicode)', abort: true })
    .refine((s) => !(opts.multiline ? CONTROL_EXCEPT_WHITESPACE : CONTROL).test(s), {
      message: `must not contain control characters${opts.multiline ? ' (tab and newlines are allowed)' : ' (no tabs or newlines either)'}`,
      abort: true,
    })
    .refine((s) => codePoints(s) >= min, {
      message: min === 1 ? 'must not be blank' : `must have at least ${min} characters`,
      abort: true,
    })
    .refine((s) => codePoints(s) <= opts.max, { message: `must have at most ${opts.max} characters` })
    .meta({ description: `${min ? `${min}–` : 'up to '}${opts.max} characters (Unicode code points)` });
}
