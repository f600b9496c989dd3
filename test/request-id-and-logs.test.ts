import { describe, expect, it } from 'vitest';
import { buildTestApp, captureLogs } from './helpers/app.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('request ids', () => {
  it('echoes a sane incoming X-Request-Id and logs it', async () => {
    const logs = captureLogs();
    const app = await buildTestApp({ logStream: logs.stream, env: { LOG_LEVEL: 'info' } });
    const res = await app.inject({ method: 'GET', url: '/api/v1/health', headers: { 'x-request-id': 'trace-abc.123' } });
    expect(res.headers['x-request-id']).toBe('trace-abc.123');
    expect(logs.records().some((r) => r.reqId === 'trace-abc.123' && r.msg === 'request completed')).toBe(true);
  });

  it('mints a uuid when none is sent, also on error replies', async () => {
    const app = await buildTestApp();
    const ok = await app.inject({ method: 'GET', url: '/api/v1/health' });
    expect(ok.headers['x-request-id']).toMatch(UUID);
    const missing = await app.inject({ method: 'GET', url: '/api/v1/missing' });
    expect(missing.headers['x-request-id']).toMatch(UUID);
    expect(missing.json().requestId).toBe(missing.headers['x-request-id']);
    expect(missing.headers['x-request-id']).not.toBe(ok.headers['x-request-id']);
  });

  it.each(['has space', 'x'.repeat(200), 'line\u0007bell', '<script>'])('replaces an unsafe incoming id (%#)', async (bad) => {
    const app = await buildTestApp();
    const res = await app.inject({ method: 'GET', url: '/api/v1/health', headers: { 'x-request-id': bad } });
    expect(res.headers['x-request-id']).toMatch(UUID);
  });
});

describe('log redaction', () => {
  const SECRET = 'jim_ak_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';

  it('never writes credentials from request headers', async () => {
    const logs = captureLogs();
    const app = await buildTestApp({ logStream: logs.stream, env: { LOG_LEVEL: 'trace' } });
    await app.inject({
      method: 'GET',
      url: '/api/v1/health?token=querysecret',
      headers: { 'x-api-key': SECRET, authorization: 'Bearer bearersecret', cookie: 'session=cookiesecret' },
    });
    const text = logs.text();
    expect(text.length).toBeGreaterThan(0);
    for (const s of [SECRET, 'bearersecret', 'cookiesecret', 'querysecret']) expect(text).not.toContain(s);
    const incoming = logs.records().find((r) => r.msg === 'incoming request');
    expect(incoming.req.headers).toMatchObject({
      'x-api-key': '[REDACTED]',
      authorization: '[REDACTED]',
      cookie: '[REDACTED]',
    });
    expect(incoming.req.url).toBe('/api/v1/health');
  });

  it('blanks key and password fields wherever the app logs them', async () => {
    const logs = captureLogs();
    const app = await buildTestApp({ logStream: logs.stream, env: { LOG_LEVEL: 'info' } });
    app.log.info({ key: SECRET, password: 'pw1', apiKey: SECRET, nested: { key: SECRET, password: 'pw2' }, deep: { a: { key: SECRET } } }, 'probe');
    const text = logs.text();
    expect(text).toContain('probe');
    for (const s of [SECRET, 'pw1', 'pw2']) expect(text).not.toContain(s);
    const probe = logs.records().find((r) => r.msg === 'probe');
    expect(probe.key).toBe('[REDACTED]');
    expect(probe.nested.password).toBe('[REDACTED]');
    expect(probe.deep.a.key).toBe('[REDACTED]');
  });

  it('blanks secret fields at any depth and in any capitalisation', async () => {
    const logs = captureLogs();
    const app = await buildTestApp({ logStream: logs.stream, env: { LOG_LEVEL: 'info' } });
    app.log.info(
      {
        a: { b: { c: { d: { password: 'deep-pw' } } } },
        cfg: { x: { databaseUrl: 'postgresql://u:url-pw@h/db' } },
        Password: 'caps-pw',
        list: [{ API_KEY: SECRET }, { Authorization: 'Bearer tok-in-list' }],
        safe: { keyPrefix: 'jim_ak_01234567', name: 'visible' },
      },
      'deep probe',
    );
    const text = logs.text();
    for (const s of ['deep-pw', 'url-pw', 'caps-pw', SECRET, 'tok-in-list']) expect(text).not.toContain(s);
    const probe = logs.records().find((r) => r.msg === 'deep probe');
    expect(probe.a.b.c.d.password).toBe('[REDACTED]');
    expect(probe.Password).toBe('[REDACTED]');
    expect(probe.list[0].API_KEY).toBe('[REDACTED]');
    // Not every field with "key" in its name is a secret.
    expect(probe.safe).toEqual({ keyPrefix: 'jim_ak_01234567', name: 'visible' });
  });

  it('never logs the database password', async () => {
    const logs = captureLogs();
    await buildTestApp({ logStream: logs.stream, env: { LOG_LEVEL: 'trace' } });
    const text = logs.text();
    expect(text).toMatch(/using PostgreSQL from DATABASE_URL/);
    // The harness URL may have no password; assert the URL itself never appears.
    expect(text).not.toMatch(/postgres(ql)?:\/\//);
  });
});
