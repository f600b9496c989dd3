// Errors Node's HTTP parser raises before fastify sees a request (a header too large, a garbage
// request line, a request that timed out) are written straight to the socket; this keeps even
// those replies problem+json.
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { ErrorCode } from './errors.js';
import { PROBLEM_CONTENT_TYPE, buildProblem } from './problem.js';

/** Node's parser errors, by their code; anything else is a request that is not valid HTTP. */
const PARSER_ERRORS: Record<string, ErrorCode> = {
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  HPE_URI_TOO_LONG: 'URI_TOO_LONG',
};

export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket) {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const code = PARSER_ERRORS[err.code ?? ''];
  const requestId = randomUUID();
  const problem = code ? buildProblem(code) : buildProblem('BAD_REQUEST', 'The request is not valid HTTP.');
  const body = JSON.stringify({ ...problem, requestId });
  socket.end(
    `HTTP/1.1 ${problem.status} ${problem.title}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
  );
}
