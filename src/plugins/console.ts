// The web console (/console): the React application built from console/ into dist/console by
// scripts/build-console.mjs, served by this server with the explorer's security headers and a
// stricter Content-Security-Policy. Unknown paths under /console/ answer index.html (the
// application routes with the URL's hash, so a reload lands on the page it was on).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../lib/errors.js';
import { EXPLORER_HEADERS } from './openapi.js';

/**
 * Stricter than the explorer's: the console's build emits no inline script and no inline style
 * (it sets element styles through the DOM, which CSP allows), so 'unsafe-inline' is not needed.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self'",
].join('; ');

export const CONSOLE_PREFIX = '/console';

/**
 * dist/console, found from this module: dist/plugins/console.js (the compiled server, the
 * container image) sits beside it, src/plugins/console.ts (tsx) two levels below the repository.
 */
export function defaultConsoleDir(): string {
  const parent = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
  return path.basename(parent) === 'dist' ? path.join(parent, 'console') : path.join(parent, '..', 'dist', 'console');
}

/** Vite names built assets by a hash of their content: safe to cache for good. */
const HASHED_ASSET = /^assets\/[^/]+-[A-Za-z0-9_-]{8,}\.[a-z0-9]+$/;

async function consolePlugin(app: FastifyInstance, opts: { dir?: string }) {
  const root = opts.dir ?? defaultConsoleDir();
  await app.register(async (scope) => {
    scope.addHook('onRequest', (_req, reply, done) => {
      reply.headers({ ...EXPLORER_HEADERS, 'content-security-policy': CONSOLE_CSP });
      done();
    });
    // sendFile only (serve: false): the routes below decide what a path answers. Checked per
    // request, so a build made while the server runs is picked up, and a missing one is a 503.
    await scope.register(fastifyStatic, { root, serve: false, suppressWarning: true, index: false });

    const isFile = (rel: string) => {
      try {
        return statSync(path.join(root, rel)).isFile();
      } catch {
        return false;
      }
    };
    const serve = async (req: FastifyRequest<{ Params: { '*'?: string } }>, reply: FastifyReply) => {
      if (!existsSync(path.join(root, 'index.html'))) throw new AppError('CONSOLE_NOT_BUILT');
      // One address for the application (its links and the page's base are under /console/).
      if (req.url.split('?')[0] === CONSOLE_PREFIX) return reply.redirect(`${CONSOLE_PREFIX}/`, 302);
      // path.posix.normalize keeps ".." out of the root (send refuses it as well).
      // (fastify has decoded the parameter already.)
      const rel = path.posix.normalize(req.params['*'] ?? '').replace(/^(\.\.\/|\/)+/, '');
      if (rel && rel !== '.' && rel !== 'index.html' && isFile(rel)) {
        if (HASHED_ASSET.test(rel)) return reply.sendFile(rel, { immutable: true, maxAge: 365 * 24 * 3600 * 1000 });
        reply.header('cache-control', 'no-cache');
        return reply.sendFile(rel, { cacheControl: false });
      }
      // The page itself: always revalidated, so a new build's asset names are picked up.
      reply.header('cache-control', 'no-cache');
      return reply.sendFile('index.html', { cacheControl: false });
    };
    scope.get(CONSOLE_PREFIX, { schema: { hide: true } }, serve);
    scope.get(`${CONSOLE_PREFIX}/*`, { schema: { hide: true } }, serve);
  });
}

export default fp(consolePlugin, { name: 'console', fastify: '5.x' });
