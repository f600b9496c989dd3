import type { Writable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import type { LoggerOptions } from 'pino';
import type { Config } from '../config.js';

/** Paths pino blanks out wherever they appear in a log line. */
export const REDACT_PATHS = [
  'req.headers["x-api-key"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  'key',
  'password',
  'apiKey',
  'databaseUrl',
  '*.key',
  '*.password',
  '*.apiKey',
  '*.databaseUrl',
  '*.*.key',
  '*.*.password',
  '*.*.apiKey',
];

/** Field names whose values are secrets, at any depth and in any case. */
const SECRET_FIELD = /^(key|api[-_]?key|x-api-key|password|passwd|secret|token|authorization|cookie|set-cookie|database[-_]?url|connection[-_]?string)$/i;
const MAX_DEPTH = 8;

/**
 * The fixed `redact` paths cover the common shapes cheaply; this catches the rest (deeper
 * nesting, other capitalisation). It copies only what it changes.
 */
export function redactSecrets(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return value;
  // Only plain data: class instances (requests, errors) go through their serializers and the
  // fixed paths; copying them would drop their prototype's getters.
  const proto = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((v, i) => {
      const r = redactSecrets(v, depth + 1);
      if (r !== v) (out ??= [...value])[i] = r;
    });
    return out ?? value;
  }
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const r = SECRET_FIELD.test(k) && v !== '[REDACTED]' && v != null ? '[REDACTED]' : redactSecrets(v, depth + 1);
    if (r !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = r;
  }
  return out ?? value;
}

/** Headers worth a line in the request log; credentials among them are redacted above. */
const LOGGED_HEADERS = ['user-agent', 'content-type', 'content-length', 'x-api-key', 'authorization', 'cookie'];

export function loggerOptions(config: Config, stream?: Writable): LoggerOptions & { stream?: Writable } {
  const pretty = !stream && (config.log.format === 'pretty' || (config.log.format === 'auto' && process.stdout.isTTY));
  return {
    level: config.log.level,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    formatters: { log: (obj) => redactSecrets(obj) as Record<string, unknown> },
    serializers: {
      req(req: FastifyRequest) {
        const headers: Record<string, unknown> = {};
        for (const h of LOGGED_HEADERS) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
        // The path only: a query string can carry anything a client typed.
        return { method: req.method, url: req.url.split('?')[0], remoteAddress: req.ip, headers };
      },
    },
    ...(stream ? { stream } : {}),
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
  };
}
