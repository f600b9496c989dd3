// Errors Node's HTTP parser raises before fastify sees a request (a header too large, a garbage
// request line, a request that timed out) are written straight to the socket; this keeps even
// those replies problem+json.
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { PROBLEM_CONTENT_TYPE, buildProblem } from './problem.js';

const STATUS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'HEADERS_TOO_LARGE', 'The request headers are too large.'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'REQUEST_TIMEOUT', 'The request did not arrive in time.'],
  HPE_URI_TOO_LONG: [414, 'URI_TOO_LONG', 'The request URL is too long.'],
};

export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket) {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code, detail] = STATUS[err.code ?? ''] ?? [400, 'BAD_REQUEST', 'The request is not valid HTTP.'];
  const requestId = randomUUID();
  const body = JSON.stringify({ ...buildProblem(status, code, detail), requestId });
  socket.end(
    `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : status === 414 ? 'URI Too Long' : 'Bad Request'}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
  );
}
