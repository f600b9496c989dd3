// Request validation with messages people can act on. JIM's cmdlets print only `message` and the
// CLI prints `detail`, so every failure is worded as "<field> <rule>" in plain words
// ("expiresAt must be an RFC 3339 date-time…", "roleIds is required", "unknown field roleIDs
// (did you mean roleIds?)"). Schemas word their own domain rules (src/schemas/); this file words
// zod's generic ones and replaces fastify-type-provider-zod's validator, whose messages are
// zod's defaults ("Invalid input: expected array, received undefined").
import { z } from 'zod';
import { ValidationError, type FieldError } from './errors.js';

type Part = 'body' | 'querystring' | 'params' | 'headers';
type Issue = z.core.$ZodIssue;
type Path = PropertyKey[];

/** How a part of the request is named when the problem is the part itself. */
const PART_NAME: Record<Part, string> = { body: 'the request body', querystring: 'the query string', params: 'the URL path', headers: 'the headers' };
const PART_FIELD: Record<Part, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'headers' };
const UNKNOWN: Record<Part, string> = { body: 'field', querystring: 'query parameter', params: 'path parameter', headers: 'header' };

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'an array',
  object: 'a JSON object',
  null: 'null',
};

/** What a received value is, without echoing it (it could be a secret pasted into the wrong field). */
function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isNaN(v) ? 'not a number' : 'a number';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'boolean') return 'a boolean';
  if (typeof v === 'object') return 'an object';
  return 'a value';
}

const plural = (n: number | bigint, one: string, many = `${one}s`) => `${n} ${Number(n) === 1 ? one : many}`;

/**
 * zod's issues where a schema gave no message of its own, as rule phrases ("must be …"). Passed
 * to every parse; schema-level messages take precedence.
 */
export function ruleOf(iss: z.core.$ZodRawIssue): string {
  switch (iss.code) {
    case 'invalid_type': {
      const expected = EXPECTED[iss.expected] ?? `a valid ${iss.expected}`;
      if (iss.input === undefined) return 'is required';
      if (typeof iss.input === 'number' && Number.isNaN(iss.input)) return `must be ${expected}`;
      return `must be ${expected}, not ${kindOf(iss.input)}`;
    }
    case 'too_small': {
      const min = iss.minimum as number;
      if (iss.origin === 'string') return min === 1 ? 'must not be empty' : `must have at least ${plural(min, 'character')}`;
      if (iss.origin === 'array' || iss.origin === 'set') return `must have at least ${plural(min, 'item')}`;
      return iss.inclusive ? `must be at least ${min}` : `must be greater than ${min}`;
    }
    case 'too_big': {
      const max = iss.maximum as number;
      if (iss.origin === 'string') return `must have at most ${plural(max, 'character')}`;
      if (iss.origin === 'array' || iss.origin === 'set') return `must have at most ${plural(max, 'item')}`;
      return iss.inclusive ? `must be at most ${max}` : `must be less than ${max}`;
    }
    case 'invalid_format':
      if (iss.format === 'datetime') return DATE_TIME_RULE;
      if (iss.format === 'guid' || iss.format === 'uuid') return GUID_RULE;
      return 'has an invalid format';
    case 'invalid_value':
      return iss.values.length === 1 ? `must be ${JSON.stringify(iss.values[0])}` : `must be one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'not_multiple_of':
      return `must be a multiple of ${iss.divisor}`;
    default:
      return 'is invalid';
  }
}

/**
 * A whole number from `min` to `max`, from text (a query string, a path, an environment
 * variable). One message for every way it can be wrong, naming the range.
 */
export function wholeNumber(min: number, max: number) {
  const error = `must be a whole number from ${min} to ${max}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

export const DATE_TIME_RULE = 'must be an RFC 3339 date-time with an offset, e.g. 2027-02-24T10:00:00Z';
export const GUID_RULE = 'must be a GUID (8-4-4-4-12 hex digits), e.g. 0b9f8c3e-6d2a-4f1b-9a7e-2c5d8e1f4a6b';

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** `roleIds[0]`, `a.b`; headers as they are usually written (`If-Match`). */
function fieldName(path: Path, part: Part): string {
  if (!path.length) return PART_FIELD[part];
  if (part === 'headers') return String(path[0]).replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join('');
}

/** The object schema at `path`, to suggest a known field for an unknown one. */
function knownKeysAt(schema: z.ZodType, path: Path): string[] {
  let s: unknown = schema;
  for (let depth = 0; s && depth < 50; depth++) {
    const def = (s as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
    if (!def) return [];
    if (def.type === 'object') {
      const shape = def.shape as Record<string, z.ZodType>;
      if (!path.length) return Object.keys(shape);
      s = shape[String(path[0])];
      path = path.slice(1);
    } else if (def.type === 'pipe') s = def.in;
    else if ('innerType' in def) s = def.innerType;
    else return [];
  }
  return [];
}

/** Optimal string alignment distance: an edit is an insertion, a deletion, a change or a swap of neighbours. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known name a mistyped one most likely meant: same letters in another case, or a near miss. */
export function closest(name: string, known: string[]): string | undefined {
  const lower = name.toLowerCase();
  const same = known.find((k) => k.toLowerCase() === lower);
  if (same) return same;
  if (name.length > 64) return undefined;
  let best: { key: string; d: number } | undefined;
  for (const k of known) {
    // Short names match only their own letters (swapped at most): "in" is not "ip".
    const allowed = k.length <= 3 ? 0 : Math.max(1, Math.floor(k.length / 4));
    const d = distance(lower, k.toLowerCase());
    const swapped = k.length <= 3 && d === 1 && [...lower].sort().join('') === [...k.toLowerCase()].sort().join('');
    if ((d <= allowed || swapped) && (!best || d < best.d)) best = { key: k, d };
  }
  return best?.key;
}

/** Unknown names are the client's own text: a long one, or one that looks like a key, is not repeated. */
const showable = (name: string) => name.length <= 64 && !/jim_ak_/i.test(name) && !/[\u0000-\u001f\u007f]/.test(name);

/** Unknown fields reported by name, at most; the rest are counted. */
const MAX_UNKNOWN_NAMED = 10;
/** Field errors in one reply, at most; the rest are counted. */
const MAX_ERRORS = 20;

function unknownKeys(issue: Extract<Issue, { code: 'unrecognized_keys' }>, base: Path, part: Part, schema: z.ZodType): FieldError[] {
  const known = knownKeysAt(schema, base);
  const what = UNKNOWN[part];
  const list = known.length ? ` (known ${what}s: ${known.join(', ')})` : '';
  const out = issue.keys.slice(0, MAX_UNKNOWN_NAMED).map((key): FieldError => {
    if (!showable(key)) {
      const field = fieldName([...base, '(not shown)'], part);
      return { field, message: `is not a known ${what}; its name is not repeated (it is long or looks like a key)${list}`, sentence: `unknown ${what} (its name is not repeated: it is long or looks like a key)${list}` };
    }
    const field = fieldName([...base, key], part);
    const guess = closest(key, known);
    const hint = guess ? ` (did you mean ${guess}?)` : list;
    return { field, message: `is not a known ${what}${hint}`, sentence: `unknown ${what} ${field}${hint}` };
  });
  const more = issue.keys.length - MAX_UNKNOWN_NAMED;
  if (more > 0) {
    const field = base.length ? fieldName(base, part) : PART_FIELD[part];
    out.push({ field, message: `has ${plural(more, `more unknown ${what}`)}`, sentence: `and ${plural(more, `more unknown ${what}`)}` });
  }
  return out;
}

/**
 * The branch of a union the value belongs to, by its JSON type: the one that did not reject the
 * value's type outright (an array's own rules, or one element's, say more than "matches none").
 */
function branchFor(issue: Extract<Issue, { code: 'invalid_union' }>): readonly Issue[] | undefined {
  // zod reports a fraction for an int as invalid_type "int": that is the number branch's own rule.
  const rejectsType = (i: Issue) => i.path.length === 0 && i.code === 'invalid_type' && i.expected !== 'int';
  return issue.errors.find((branch) => branch.length && !branch.some(rejectsType));
}

/** zod's issues as field errors, each with a sentence naming the field and the rule. */
export function fieldErrors(issues: readonly Issue[], data: unknown, part: Part, schema: z.ZodType, base: Path = []): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of issues) {
    const path = [...base, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      out.push(...unknownKeys(issue, path, part, schema));
      continue;
    }
    const raw = valueAt(data, path);
    if (issue.code === 'invalid_union' && raw !== undefined) {
      const branch = branchFor(issue);
      if (branch) {
        out.push(...fieldErrors(branch, data, part, schema, path));
        continue;
      }
    }
    const missing = raw === undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_union');
    // fastify hands an empty body over as null: say so rather than "not null".
    const empty = part === 'body' && !path.length && raw === null && issue.code === 'invalid_type';
    // `?limit=1&limit=2` arrives as an array.
    const repeated = part === 'querystring' && path.length === 1 && Array.isArray(raw);
    const message = missing ? 'is required' : empty ? 'must be a JSON object (it is empty or null)' : repeated ? 'must be given only once' : issue.message;
    const field = fieldName(path, part);
    const subject = path.length ? field : PART_NAME[part];
    out.push({ field, message, sentence: `${subject} ${message}` });
  }
  return out;
}

/** One error per field and rule (a union can report the same thing twice), and a bounded reply. */
function bounded(errors: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  const unique = errors.filter((e) => {
    const k = `${e.field}\u0000${e.message}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });
  if (unique.length <= MAX_ERRORS) return unique;
  const rest = unique.length - (MAX_ERRORS - 1);
  return [...unique.slice(0, MAX_ERRORS - 1), { field: 'request', message: `has ${plural(rest, 'more problem')}`, sentence: `and ${plural(rest, 'more problem')}` }];
}

/**
 * fastify's validator compiler: zod schemas parsed with our wording. A failure is a
 * ValidationError (400 VALIDATION_FAILED), whose detail lists every problem.
 */
export function validatorCompiler({ schema, httpPart }: { schema: unknown; httpPart?: string }) {
  const zodSchema = schema as z.ZodType;
  const part = (httpPart ?? 'body') as Part;
  return (data: unknown) => {
    const result = zodSchema.safeParse(data, { error: ruleOf });
    if (result.success) return { value: result.data };
    return { error: new ValidationError(bounded(fieldErrors(result.error.issues, data, part, zodSchema))) };
  };
}
