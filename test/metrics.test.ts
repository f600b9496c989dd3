// GET /metrics: off by default; on the API port behind metrics.read; or on its own port.
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { NO_METRICS } from '../src/lib/metrics.js';
import { buildTestApp, testConfig } from './helpers/app.js';
import { ADMIN, READER, seedKey } from './helpers/keys.js';

const MONITORING = 4;
const ON = { METRICS_ENABLED: 'true' };

/** The value of one sample line, e.g. `name{a="b"}`; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics off (the default)', () => {
  it('serves no /metrics (a 404 saying how to enable them) and installs no recorder', async () => {
    const app = await buildTestApp();
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const res = await app.inject({ method: 'GET', url: '/metrics', headers: admin.headers });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
    // It says how to turn them on, to anyone (it reveals nothing but the setting's name).
    expect(res.json()).toMatchObject({ code: 'NOT_FOUND', detail: expect.stringContaining('METRICS_ENABLED=true') });
    expect((await app.inject({ method: 'GET', url: '/metrics' })).json().detail).toMatch(/^Metrics are off: start the server with METRICS_ENABLED=true/);
    expect(app.metrics).toBe(NO_METRICS);
  });
});

describe('metrics on the API port', () => {
  it('needs a key with metrics.read: none is 401, Reader is 403, Monitoring and Administrator get the text format', async () => {
    const app = await buildTestApp({ env: ON });
    const reader = await seedKey(app, { roleIds: [READER] });
    const monitor = await seedKey(app, { roleIds: [MONITORING] });
    const admin = await seedKey(app, { roleIds: [ADMIN] });

    const anonymous = await app.inject({ method: 'GET', url: '/metrics' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json().code).toBe('UNAUTHENTICATED');
    const forbidden = await app.inject({ method: 'GET', url: '/metrics', headers: reader.headers });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toMatchObject({ code: 'FORBIDDEN', detail: expect.stringContaining('metrics.read') });

    for (const who of [monitor, admin]) {
      const res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${who.secret}` } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(res.body).toMatch(/^# HELP /m);
      expect(res.body).toContain('process_cpu_user_seconds_total');
      expect(res.body).toContain('nodejs_eventloop_lag_seconds');
    }
    // The Monitoring role holds nothing else.
    const list = await app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: monitor.headers });
    expect(list.statusCode).toBe(403);
    // Not part of the public API description.
    const doc = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(Object.keys(doc.json().paths)).not.toContain('/metrics');
  });

  it('counts requests by route template and status, auth outcomes, cache hits and misses, argon2 work and the pool', async () => {
    const app = await buildTestApp({ env: ON });
    const monitor = await seedKey(app, { roleIds: [MONITORING] });
    const reader = await seedKey(app, { roleIds: [READER] });
    const scrape = async () => (await app.inject({ method: 'GET', url: '/metrics', headers: monitor.headers })).body;
    const before = await scrape();

    for (let i = 0; i < 3; i++) expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: reader.headers })).statusCode).toBe(200);
    const wrong = `${reader.secret.slice(0, -4)}AAAA`;
    expect((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': wrong } })).statusCode).toBe(401);
    const id = randomBytes(8).toString('hex');
    expect((await app.inject({ method: 'GET', url: `/api/v1/no-such-route/${id}` })).statusCode).toBe(404);
    expect((await app.inject({ method: 'GET', url: `/api/v1/apikeys/${crypto.randomUUID()}`, headers: reader.headers })).statusCode).toBe(404);

    const text = await scrape();
    const delta = (series: string) => (sample(text, series) ?? 0) - (sample(before, series) ?? 0);
    expect(delta('keyward_http_requests_total{method="GET",route="/api/v1/userinfo",status="200"}')).toBe(3);
    expect(delta('keyward_http_requests_total{method="GET",route="/api/v1/userinfo",status="401"}')).toBe(1);
    expect(delta('keyward_http_request_duration_seconds_count{method="GET",route="/api/v1/userinfo",status="200"}')).toBe(3);
    expect(sample(text, 'keyward_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/v1/userinfo",status="200"}')).toBeGreaterThanOrEqual(3);
    // Paths with ids are counted under their template, never their raw URL.
    expect(delta('keyward_http_requests_total{method="GET",route="/api/v1/apikeys/:id",status="404"}')).toBe(1);
    expect(delta('keyward_http_requests_total{method="GET",route="(unmatched)",status="404"}')).toBe(1);
    expect(text).not.toContain(id);
    // 3 userinfo + 1 apikeys/:id authenticated; the previous scrape too.
    expect(delta('keyward_auth_outcomes_total{outcome="OK"}')).toBe(5);
    expect(delta('keyward_auth_outcomes_total{outcome="API_KEY_INVALID"}')).toBe(1);
    // The first userinfo verified the reader with argon2 (a miss); the rest were hits.
    expect(delta('keyward_auth_cache_misses_total')).toBe(2);
    expect(delta('keyward_auth_cache_hits_total')).toBe(4);
    expect(sample(text, 'keyward_auth_cache_entries')).toBe(2);
    expect(sample(text, 'keyward_argon2_duration_seconds_count{op="verify"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'keyward_argon2_duration_seconds_count{op="hash"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'keyward_argon2_queue_depth')).toBe(0);
    expect(sample(text, 'keyward_argon2_in_progress')).toBe(0);
    expect(sample(text, 'keyward_db_pool_connections{state="total"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'keyward_db_pool_max')).toBe(10);
    expect(sample(text, 'keyward_db_pool_waiting')).toBe(0);
    expect(sample(text, 'keyward_rate_limit_rejections_total{scope="ip"}')).toBe(0);
    // Secrets never appear, not even the prefix of a wrong one.
    for (const s of [reader.secret, monitor.secret, wrong]) expect(text).not.toContain(s);
  });

  it('counts rate-limit rejections by scope', async () => {
    const app = await buildTestApp({ env: { ...ON, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_IP_MAX: '2', RATE_LIMIT_KEY_MAX: '1000' } });
    const monitor = await seedKey(app, { roleIds: [MONITORING] });
    const remoteAddress = '10.9.8.7';
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) {
      codes.push((await app.inject({ method: 'GET', url: '/api/v1/userinfo', headers: { 'x-api-key': 'nope' }, remoteAddress })).statusCode);
    }
    expect(codes).toEqual([401, 401, 429, 429]);
    const text = (await app.inject({ method: 'GET', url: '/metrics', headers: monitor.headers })).body;
    expect(sample(text, 'keyward_rate_limit_rejections_total{scope="ip"}')).toBe(2);
    expect(sample(text, 'keyward_rate_limit_rejections_total{scope="key"}')).toBe(0);
    expect(sample(text, 'keyward_auth_outcomes_total{outcome="RATE_LIMITED"}')).toBe(2);
  });
});

describe('metrics on their own port (METRICS_PORT)', () => {
  it('serves /metrics there without a key, and nothing there but /metrics; the API port has no /metrics', async () => {
    const app = await buildTestApp({ env: { ...ON, METRICS_PORT: '0', METRICS_HOST: '127.0.0.1' } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const { port } = app.metricsAddress!() as AddressInfo;
    const base = `http://127.0.0.1:${port}`;

    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await res.text()).toContain('keyward_auth_cache_entries');
    const other = await fetch(`${base}/api/v1/apikeys`, { headers: admin.headers });
    expect(other.status).toBe(404);
    expect(other.headers.get('content-type')).toBe('application/problem+json');
    expect(JSON.stringify(await other.json())).not.toContain(admin.secret);
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');

    // Garbage on that port gets a problem+json 400 too, as on the API port.
    const garbage = await new Promise<string>((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write('NOT HTTP\r\n\r\n'));
      let data = '';
      socket.on('data', (d) => (data += d));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    expect(garbage).toContain('application/problem+json');

    const onApi = await app.inject({ method: 'GET', url: '/metrics', headers: admin.headers });
    expect(onApi.statusCode).toBe(404);
    expect(onApi.json().detail).toBe(`Metrics are served on their own port (${port}, METRICS_PORT), not on this one.`);

    await app.close();
    await expect(fetch(`${base}/metrics`)).rejects.toThrow();
  });

  it('refuses a metrics port without METRICS_ENABLED, or equal to PORT', () => {
    expect(() => testConfig({ METRICS_PORT: '9464' })).toThrow(/METRICS_PORT: set METRICS_ENABLED=true/);
    expect(() => testConfig({ ...ON, METRICS_PORT: '9464', PORT: '9464' })).toThrow(/METRICS_PORT: must differ from PORT/);
  });
});
