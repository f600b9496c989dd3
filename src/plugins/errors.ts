// The one error handler: every error reply, whatever raised it, is application/problem+json.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import FindMyWay, { type HTTPMethod } from 'find-my-way';
import { isResponseSerializationError } from 'fastify-type-provider-zod';
import { AppError, type ErrorCode } from '../lib/errors.js';
import { buildProblem, sendProblem } from '../lib/problem.js';

/** Fastify's own client errors (by its code) as ours, with a detail that says what was wrong. */
const FRAMEWORK_ERRORS: Record<string, { code: ErrorCode; detail?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'PAYLOAD_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'BAD_REQUEST', detail: 'The Content-Length header does not match the body.' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'MALFORMED_JSON', detail: 'The body is empty but Content-Type is application/json.' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'MALFORMED_JSON' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'URI_TOO_LONG', detail: 'A path segment of the URL is too long.' },
  FST_ERR_BAD_URL: { code: 'BAD_REQUEST', detail: 'The request URL is malformed.' },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'BAD_REQUEST', detail: 'The request could not be routed.' },
  FST_ERR_CTP_INVALID_TYPE: { code: 'BAD_REQUEST', detail: 'The Content-Type header is invalid.' },
};

/** Prisma errors that mean "the database is unreachable or overloaded", not a bug: 503. */
const UNAVAILABLE_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2028', 'P2034']);
const UNAVAILABLE_MESSAGE = /Can't reach database server|Connection terminated|ECONNREFUSED|ECONNRESET|timeout exceeded when trying to connect|terminating connection/i;
/** pg and pg-pool's own wording: plain `Error`s that can only come from the database client. */
const PG_UNAVAILABLE_MESSAGE = /^(Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error)/;

/**
 * Whether `err` (or anything in its cause chain) means the database is unreachable, frozen or
 * overloaded. Prisma's and the adapter's errors say so by name and code; pg-pool's are plain
 * `Error`s ("Connection terminated due to connection timeout", "Query read timeout") whose
 * wording is the client's own. A bare ECONNREFUSED from elsewhere stays a 500.
 */
export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  const e = err as { name?: string; code?: unknown; message?: string; cause?: unknown };
  if (!e || typeof e !== 'object' || depth > 5) return false;
  if (e.name === 'PrismaClientInitializationError') return true;
  if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code) && /^PrismaClient/.test(e.name ?? '')) return true;
  if (/^(PrismaClient|DriverAdapter)/.test(e.name ?? '') && UNAVAILABLE_MESSAGE.test(e.message ?? '')) return true;
  if (PG_UNAVAILABLE_MESSAGE.test(e.message ?? '')) return true;
  return e.cause !== undefined && isDatabaseUnavailable(e.cause, depth + 1);
}

const METHODS: HTTPMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Maps any thrown value to a problem; exported so framework-level handlers share it. */
export function handleError(error: unknown, req: FastifyRequest, reply: FastifyReply) {
  const err = error as FastifyError;
  // Framework errors (bad URL, over-long segment) arrive before any hook has run.
  reply.header('x-request-id', req.id);
  if (error instanceof AppError) {
    // A 503 is a state (overload, shutdown), not a bug: one warning line, no stack.
    if (error.status === 503) req.log.warn({ code: error.code }, error.message);
    else if (error.status >= 500) req.log.error({ err: error }, error.message);
    return sendProblem(reply, buildProblem(error.code, error.message, req, error.response.errors), error.response.headers);
  }
  const known = err?.code ? FRAMEWORK_ERRORS[err.code] : undefined;
  if (known) return sendProblem(reply, buildProblem(known.code, known.detail, req));
  if (err instanceof SyntaxError && (err as { statusCode?: number }).statusCode === 400) {
    return sendProblem(reply, buildProblem('MALFORMED_JSON', undefined, req));
  }
  if (isDatabaseUnavailable(err)) {
    req.log.warn({ err }, 'database unavailable');
    return sendProblem(reply, buildProblem('SERVICE_UNAVAILABLE', undefined, req));
  }
  if (isResponseSerializationError(err)) {
    req.log.error({ err }, 'response did not match its schema');
  } else if (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    // Any other client error fastify raises: keep its status, never its internals.
    return sendProblem(reply, buildProblem('BAD_REQUEST', undefined, req, undefined, err.statusCode));
  } else {
    req.log.error({ err }, 'unhandled error');
  }
  return sendProblem(reply, buildProblem('INTERNAL_ERROR', undefined, req));
}

async function errorsPlugin(app: FastifyInstance) {
  // A shadow router of every registered route, consulted only on a 404 to tell "no such
  // resource" from "resource exists, wrong method" (405 with Allow).
  const shadow = FindMyWay({ ignoreTrailingSlash: false });
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const m of methods) {
      try {
        shadow.on(m as HTTPMethod, route.url, () => {});
      } catch {
        // duplicate (HEAD from exposeHeadRoutes); already known
      }
    }
  });

  app.setErrorHandler(handleError);
  app.setNotFoundHandler((req, reply) => {
    // The router ignores a trailing slash; so does this check.
    const path = req.url.split('?')[0].replace(/(.)\/+$/, '$1');
    const allowed = METHODS.filter((m) => shadow.find(m, path));
    // A route that does take this method but found nothing (a missing static file) is a 404.
    if (allowed.length && !allowed.includes(req.method as (typeof METHODS)[number])) {
      return sendProblem(
        reply,
        buildProblem('METHOD_NOT_ALLOWED', `${req.method} is not allowed here; use ${allowed.join(', ')}.`, req),
        { allow: allowed.join(', ') },
      );
    }
    return sendProblem(reply, buildProblem('NOT_FOUND', `No route for ${req.method} ${path}.`, req));
  });
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' });
