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

/** Headers worth a line in the request log; credentials among them are redacted above. */
const LOGGED_HEADERS = ['user-agent', 'content-type', 'content-length', 'x-api-key', 'authorization', 'cookie'];

export function loggerOptions(config: Config, stream?: Writable): LoggerOptions & { stream?: Writable } {
  const pretty = !stream && (config.log.format === 'pretty' || (config.log.format === 'auto' && process.stdout.isTTY));
  return {
    level: config.log.level,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
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
