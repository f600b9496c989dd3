// What a client on a real socket sees for errors Node raises before fastify routes a request,
// and while the server is closing.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';

function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let out = '';
    sock.on('data', (d) => (out += d));
    sock.on('error', reject);
    sock.on('close', () => resolve(out));
    sock.write(request);
  });
}

function parse(response: string) {
  const [head, body] = response.split('\r\n\r\n');
  const [statusLine, ...headerLines] = head.split('\r\n');
  const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(body) };
}

async function listening() {
  const app = await buildTestApp();
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, port: (app.server.address() as AddressInfo).port };
}

describe('errors raised by the HTTP parser are problem+json too', () => {
  it('headers over the limit: 431', async () => {
    const { port } = await listening();
    const res = parse(await raw(port, `GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['x-request-id']).toBe(res.body.requestId);
    expect(res.body).toMatchObject({ status: 431, code: 'HEADERS_TOO_LARGE' });
  });

  it('a garbage request line: 400', async () => {
    const { port } = await listening();
    const res = parse(await raw(port, 'HELLO THERE\r\n\r\n'));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.body).toMatchObject({ status: 400, code: 'BAD_REQUEST', message: res.body.detail });
  });

  it('applies the configured timeouts to the HTTP server', async () => {
    const app = await buildTestApp({ env: { REQUEST_TIMEOUT_MS: '7000', CONNECTION_TIMEOUT_MS: '80000', KEEP_ALIVE_TIMEOUT_MS: '9000' } });
    expect(app.server.requestTimeout).toBe(7000);
    expect(app.server.timeout).toBe(80000);
    expect(app.server.keepAliveTimeout).toBe(9000);
  });

  it('a request that does not arrive within REQUEST_TIMEOUT_MS: 408 problem', async () => {
    const app = await buildTestApp({ env: { REQUEST_TIMEOUT_MS: '1000' } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const started = Date.now();
    const res = parse(await raw(port, 'GET /api/v1/health HTTP/1.1\r\nHost: x\r\n'));
    expect(res.status).toBe(408);
    expect(res.body.code).toBe('REQUEST_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(4_000);
  });
});

describe('a body that trickles in', () => {
  it('is cut at REQUEST_TIMEOUT_MS with a 408 problem, counted from the request\'s arrival', async () => {
    const app = await buildTestApp({ env: { REQUEST_TIMEOUT_MS: '1000' }, ready: false });
    app.post('/api/v1/__slow-body', async () => ({ ok: true }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const started = Date.now();
    const res = parse(await raw(port, 'POST /api/v1/__slow-body HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na'));
    expect(res.status).toBe(408);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.body.code).toBe('REQUEST_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

describe('while closing', () => {
  it('an in-flight reply says Connection: close and the server hangs up after it (no keep-alive wait)', async () => {
    const app = await buildTestApp({ ready: false });
    // A slow first request keeps the connection busy while close() begins.
    app.addHook('onRequest', async (req) => {
      if (req.url === '/api/v1/health?slow') await new Promise((r) => setTimeout(r, 300));
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => sock.once('connect', r));
    let out = '';
    sock.on('data', (d) => (out += d));
    sock.write('GET /api/v1/health?slow HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const closed = app.close();
    await new Promise((r) => sock.once('close', r));
    await closed;
    expect(Date.now() - started).toBeLessThan(2_000);
    const responses = out.split(/(?=HTTP\/1\.1 )/);
    // The pipelined second request is not served: the connection ends with the first reply.
    expect(responses).toHaveLength(1);
    const first = parse(responses[0]);
    expect(first.status).toBe(200);
    expect(first.headers.connection).toBe('close');
    expect(first.body).toEqual({ status: 'healthy', database: 'ok' });
  });
});

describe('one key, once, as the socket carries it', () => {
  // Node keeps only the first Authorization header and joins repeated X-API-Key values: only
  // the raw headers show the repeat, and inject() cannot send one the way a socket does.
  it.each([
    ['Authorization', (a: string, b: string) => `Authorization: Bearer ${a}\r\nAuthorization: Bearer ${b}\r\n`],
    ['Authorization, the same key twice', (a: string) => `Authorization: Bearer ${a}\r\nauthorization: Bearer ${a}\r\n`],
    ['X-API-Key', (a: string, b: string) => `X-API-Key: ${a}\r\nX-API-Key: ${b}\r\n`],
  ])('a repeated %s header is refused (401), even when the first one is valid', async (_label, headers) => {
    const { app, port } = await listening();
    const { seedKey, ADMIN } = await import('./helpers/keys.js');
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const other = await seedKey(app, { roleIds: [] });
    const res = parse(await raw(port, `GET /api/v1/userinfo HTTP/1.1\r\nHost: x\r\n${headers(admin.secret, other.secret)}Connection: close\r\n\r\n`));
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ code: 'API_KEY_INVALID', detail: 'Send one API key, once.' });
    // One of each is fine.
    const ok = parse(await raw(port, `GET /api/v1/userinfo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin.secret}\r\nConnection: close\r\n\r\n`));
    expect(ok.status).toBe(200);
    expect(ok.body.id).toBe(admin.id);
  });
});
