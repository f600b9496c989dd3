import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { App } from '../src/app.js';
import { AppError } from '../src/lib/errors.js';
import { buildTestApp, captureLogs } from './helpers/app.js';

// Test-only routes exercise the shared error handler the way real routes will.
const probeRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/probe/:id',
    {
      schema: {
        params: z.object({ id: z.uuid() }),
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(10).optional() }),
        body: z.strictObject({ name: z.string().min(1), tags: z.array(z.string()).optional() }),
      },
    },
    async (req) => ({ id: req.params.id, name: req.body.name }),
  );
  app.get('/probe-boom', async () => {
    throw new Error('connect ECONNREFUSED db-internal.corp:5432 password=hunter2');
  });
  app.get('/probe-typed', async () => {
    throw new AppError('PRECONDITION_FAILED', 'Something conflicts.');
  });
  app.get('/probe-range', async () => {
    throw Object.assign(new Error('internal detail'), { statusCode: 416 });
  });
  app.get('/probe-overloaded', async () => {
    throw new AppError('OVERLOADED', 'Too busy.', { headers: { 'retry-after': '1' } });
  });
};

let app: App;
const ID = '7b0a3f3e-51a6-4f5e-9a55-3c2e2c5f0c11';

const logs = captureLogs();

beforeAll(async () => {
  app = await buildTestApp({ ready: false, env: { LOG_LEVEL: 'info' }, logStream: logs.stream });
  await app.register(probeRoutes, { prefix: '/api/v1' });
  await app.ready();
});

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; json(): any }, status: number, code: string) {
  expect(res.statusCode).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  const body = res.json();
  expect(body).toMatchObject({ status, code, type: expect.stringMatching(/^urn:keyward:problem:/) });
  expect(typeof body.title).toBe('string');
  expect(body.detail.length).toBeGreaterThan(0);
  expect(body.message).toBe(body.detail);
  expect(body.requestId).toBe(res.headers['x-request-id']);
  expect(new Date(body.timestamp).toISOString()).toBe(body.timestamp);
  expect(res.headers['x-powered-by']).toBeUndefined();
  return body;
}

const json = { 'content-type': 'application/json' };

describe('problem+json for every error class', () => {
  it("another 4xx a plugin raises keeps its status, and the title of that status, never its message", async () => {
    const body = expectProblem(await app.inject({ method: 'GET', url: '/api/v1/probe-range' }), 416, 'BAD_REQUEST');
    expect(body.title).toBe('Client Error');
    expect(JSON.stringify(body)).not.toContain('internal detail');
  });

  it('validation failure: 400 with errors[] and JIM validationErrors{}', async () => {
    const res = await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}`, headers: json, payload: { name: '', extra: 1 } });
    const body = expectProblem(res, 400, 'VALIDATION_FAILED');
    expect(body.errors).toEqual(
      expect.arrayContaining([
        { field: 'name', message: expect.any(String) },
        { field: 'extra', message: expect.stringMatching(/^is not a known field/) },
      ]),
    );
    expect(body.validationErrors.name).toEqual([expect.any(String)]);
    expect(Object.values(body.validationErrors).flat()).toHaveLength(body.errors.length);
  });

  it('validation failure in the path and the query string', async () => {
    const p = expectProblem(await app.inject({ method: 'POST', url: '/api/v1/probe/not-a-uuid', headers: json, payload: { name: 'x' } }), 400, 'VALIDATION_FAILED');
    expect(p.errors[0].field).toBe('id');
    const q = expectProblem(await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}?limit=abc`, headers: json, payload: { name: 'x' } }), 400, 'VALIDATION_FAILED');
    expect(q.errors[0].field).toBe('limit');
    expect(q.detail).toMatch(/^limit must be/);
  });

  it('a valid request passes the same route', async () => {
    const res = await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}?limit=3`, headers: json, payload: { name: 'ok' } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ id: ID, name: 'ok' });
  });

  it('unknown route: 404', async () => {
    const body = expectProblem(await app.inject({ method: 'GET', url: '/api/v1/nothing-here' }), 404, 'NOT_FOUND');
    expect(body.instance).toBe('/api/v1/nothing-here');
  });

  it('wrong method: 405 with Allow', async () => {
    const res = await app.inject({ method: 'DELETE', url: '/api/v1/health' });
    expectProblem(res, 405, 'METHOD_NOT_ALLOWED');
    expect(res.headers.allow).toBe('GET, HEAD');
    const aliased = await app.inject({ method: 'PUT', url: '/api/health' });
    expectProblem(aliased, 405, 'METHOD_NOT_ALLOWED');
  });

  it('body over 64 KiB: 413', async () => {
    const payload = JSON.stringify({ name: 'x'.repeat(70 * 1024) });
    expectProblem(await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}`, headers: json, payload }), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('a body just under the limit is accepted', async () => {
    const payload = JSON.stringify({ name: 'x'.repeat(60 * 1024) });
    expect((await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}`, headers: json, payload })).statusCode).toBe(200);
  });

  it.each(['{"name": ', '{"name":"a",}', 'nope', '{"name":"a"}}'])('malformed JSON %j: 400', async (payload) => {
    expectProblem(await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}`, headers: json, payload }), 400, 'MALFORMED_JSON');
  });

  it('empty JSON body where one is required: 400 naming the body', async () => {
    const body = expectProblem(await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}`, headers: json, payload: '' }), 400, 'VALIDATION_FAILED');
    expect(body.errors[0].field).toBe('body');
  });

  it('__proto__ in a body is refused', async () => {
    const res = await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}`, headers: json, payload: '{"name":"x","__proto__":{"admin":true}}' });
    expectProblem(res, 400, 'BAD_REQUEST');
  });

  it('unsupported content type: 415', async () => {
    const res = await app.inject({ method: 'POST', url: `/api/v1/probe/${ID}`, headers: { 'content-type': 'text/plain' }, payload: 'name=x' });
    expectProblem(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('over-long URL segment: 414', async () => {
    const res = await app.inject({ method: 'POST', url: `/api/v1/probe/${'a'.repeat(500)}`, headers: json, payload: { name: 'x' } });
    expectProblem(res, 414, 'URI_TOO_LONG');
  });

  it('malformed URL (bad percent-encoding): 400', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/probe/%E0%A4%A', headers: json, payload: { name: 'x' } });
    expectProblem(res, 400, 'BAD_REQUEST');
  });

  it('a route that takes the method but finds nothing (a missing explorer asset) is 404, not 405', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs/static/no-such-file.js' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers.allow).toBeUndefined();
    expect((await app.inject({ method: 'DELETE', url: '/docs/static/no-such-file.js' })).statusCode).toBe(405);
  });

  it('a 503 state (overload, shutdown) is logged as one warning without a stack, not an error', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/probe-overloaded' });
    expectProblem(res, 503, 'OVERLOADED');
    const line = logs.records().find((l) => l.reqId === res.headers['x-request-id'] && l.msg === 'Too busy.');
    expect(line).toMatchObject({ level: 40, code: 'OVERLOADED' });
    expect(JSON.stringify(line)).not.toContain('stack');
  });

  it('typed application error keeps its status and code', async () => {
    const body = expectProblem(await app.inject({ method: 'GET', url: '/api/v1/probe-typed' }), 412, 'PRECONDITION_FAILED');
    expect(body.detail).toBe('Something conflicts.');
  });

  it('unexpected failure: 500 that says nothing internal', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/probe-boom' });
    const body = expectProblem(res, 500, 'INTERNAL_ERROR');
    expect(body.detail).toBe('An unexpected error occurred.');
    expect(res.body).not.toMatch(/ECONNREFUSED|db-internal|hunter2|stack|at /);
  });
});
