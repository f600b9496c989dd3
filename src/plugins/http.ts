// HTTP behaviour shared by every route: JSON bodies only, request ids, and what a client sees
// while the server shuts down.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import secureJsonParse from 'secure-json-parse';
import { AppError } from '../lib/errors.js';
import { buildProblem, sendProblem } from '../lib/problem.js';

const arrivals = new WeakMap<object, number>();
const startedAt = (req: { raw: object }) => arrivals.get(req.raw) ?? performance.now();

async function httpPlugin(app: FastifyInstance, opts: { requestTimeoutMs: number }) {
  // Node's requestTimeout does not cover a body that trickles in once the headers are complete:
  // bound the whole request ourselves, counted from its arrival.
  app.addHook('preParsing', async (req, _reply, payload) => {
    if (req.raw.complete) return payload;
    const remaining = Math.max(1, opts.requestTimeoutMs - (performance.now() - startedAt(req)));
    const timer = setTimeout(() => {
      if (!req.raw.complete) {
        // An error on the body stream ends its parsing with this reply (destroying it would
        // drop the socket unanswered).
        payload.emit('error', new AppError('REQUEST_TIMEOUT', undefined, { headers: { connection: 'close' } }));
      }
    }, remaining);
    const clear = () => clearTimeout(timer);
    req.raw.once('end', clear);
    req.raw.once('close', clear);
    return payload;
  });

  // JSON only: fastify's built-in text/plain parser would hand handlers a string body.
  app.removeContentTypeParser('text/plain');
  // An empty body with a JSON content type is "no body" (clients such as PowerShell send the
  // header on DELETE too); routes that need a body then fail validation with a clear message.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, secureJsonParse(text, { protoAction: 'error', constructorAction: 'error' }));
    } catch (err) {
      done(
        /prototype/.test((err as Error).message)
          ? new AppError('BAD_REQUEST', 'The body must not contain __proto__ or constructor.prototype keys.')
          : new AppError('MALFORMED_JSON'),
        undefined,
      );
    }
  });

  // While shutting down: a new request on a kept-alive connection gets a 503 problem, and every
  // reply asks the client to hang up, so no idle connection holds close() open.
  let closing = false;
  let reaper: NodeJS.Timeout | undefined;
  app.addHook('preClose', async () => {
    closing = true;
    // close() drops the connections idle at that moment; keep dropping the ones that go idle
    // after their last in-flight request, instead of waiting out their keep-alive.
    reaper = setInterval(() => app.server.closeIdleConnections(), 50);
    reaper.unref();
  });
  app.addHook('onClose', async () => {
    clearInterval(reaper);
  });
  app.addHook('onRequest', async (req, reply) => {
    arrivals.set(req.raw, performance.now());
    reply.header('x-request-id', req.id);
    if (closing) {
      reply.header('connection', 'close');
      return sendProblem(reply, buildProblem('SHUTTING_DOWN', undefined, req));
    }
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('connection', 'close');
  });
}

export default fp(httpPlugin, { name: 'http', fastify: '5.x' });
