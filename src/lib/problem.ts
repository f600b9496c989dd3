import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ERROR_CATALOGUE, entryOf, isErrorCode, type ErrorCode, type FieldError } from './errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** RFC 9110's reason phrases for the statuses the catalogue uses. */
const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** RFC 9457 problem details, plus JIM's `message`/`validationErrors` so its PowerShell client reads them. */
export const problemSchema = z
  .object({
    type: z.string().describe('URI identifying the problem type'),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe('Stable machine-readable error code'),
    message: z.string().describe('Same text as detail (read by JIM clients)'),
    instance: z.string().optional(),
    requestId: z.string().optional(),
    timestamp: z.string().describe('RFC 3339 UTC time of the error'),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
    validationErrors: z.record(z.string(), z.array(z.string())).optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details' });

export type Problem = z.infer<typeof problemSchema>;

/** The problem body for `code` (its status from the catalogue), with this request's id and path. */
export function buildProblem(
  code: ErrorCode,
  detail: string = entryOf(code).detail,
  req?: FastifyRequest,
  errors?: FieldError[],
  /** A status other than the code's: a framework's own 4xx answered as BAD_REQUEST keeps its status. */
  status: number = entryOf(code).status,
): Problem {
  const problem: Problem = {
    type: `urn:keyward:problem:${code.toLowerCase().replace(/_/g, '-')}`,
    title: TITLES[status] ?? (status >= 500 ? 'Server Error' : 'Client Error'),
    status,
    detail,
    code,
    message: detail,
    instance: req ? req.url.split('?')[0] : undefined,
    requestId: req ? String(req.id) : undefined,
    timestamp: new Date().toISOString(),
  };
  if (errors?.length) {
    problem.errors = errors.map(({ field, message }) => ({ field, message }));
    // No prototype: a client's field may be called "constructor" or "toString".
    const byField: Record<string, string[]> = Object.create(null);
    for (const e of errors) (byField[e.field] ??= []).push(e.message);
    problem.validationErrors = byField;
  }
  return problem;
}

/** Sends a problem, with its code's Retry-After when the catalogue gives one (`headers` win). */
export function sendProblem(reply: FastifyReply, problem: Problem, headers: Record<string, string> = {}) {
  const retryAfter = isErrorCode(problem.code) ? entryOf(problem.code).retryAfter : undefined;
  return reply
    .code(problem.status)
    .headers(retryAfter === undefined ? headers : { 'retry-after': String(retryAfter), ...headers })
    .type(PROBLEM_CONTENT_TYPE)
    .serializer(JSON.stringify)
    .send(problem);
}

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request (problem details list each field)',
  401: 'No key, or an invalid, disabled or expired key (UNAUTHENTICATED, API_KEY_INVALID, API_KEY_DISABLED, API_KEY_EXPIRED)',
  403: 'The key lacks a permission this needs (FORBIDDEN), or is used from outside its allowedCidrs (IP_NOT_ALLOWED)',
  404: 'No key with this id (API_KEY_NOT_FOUND)',
  409: 'A disabled or expired key cannot be rotated (API_KEY_NOT_ROTATABLE)',
  412: 'If-Match does not match the current ETag (PRECONDITION_FAILED)',
};

/** The code a document example shows for a status, when its description names none. */
const DEFAULT_CODE: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'API_KEY_INVALID',
  403: 'FORBIDDEN',
  404: 'API_KEY_NOT_FOUND',
  412: 'PRECONDITION_FAILED',
  429: 'RATE_LIMITED',
  503: 'SERVICE_UNAVAILABLE',
};

/** An example problem for the document, from the catalogue (fixed id and time, so the committed document does not drift). */
export function exampleProblem(status: number, named?: ErrorCode): Problem {
  const code = named ?? DEFAULT_CODE[status] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'BAD_REQUEST');
  const entry = ERROR_CATALOGUE[code] as { example?: string; exampleErrors?: FieldError[]; detail: string };
  // The response's own status, whatever the code's (a status with no code of its own gets a generic one).
  const detail = named || DEFAULT_CODE[status] ? (entry.example ?? entry.detail) : (TITLES[status] ?? 'Error');
  return {
    ...buildProblem(code, detail, undefined, entry.exampleErrors, status),
    instance: '/api/v1/apikeys',
    requestId: '5f0c2d1e-8b7a-4c3d-9e2f-1a0b9c8d7e6f',
    timestamp: '2026-11-26T09:00:00.000Z',
  };
}

/** OpenAPI responses for the given error statuses, as application/problem+json. */
export function problemResponses(...statuses: Array<number | [status: number, description: string]>) {
  return Object.fromEntries(
    statuses.map((entry) => {
      const [s, description] = typeof entry === 'number' ? [entry, PROBLEM_DESCRIPTIONS[entry] ?? TITLES[entry] ?? 'Error'] : entry;
      return [s, { description, content: { [PROBLEM_CONTENT_TYPE]: { schema: problemSchema } } }];
    }),
  ) as Record<number, { description: string; content: Record<string, { schema: typeof problemSchema }> }>;
}
