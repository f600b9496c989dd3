// What every reply does not say: no X-Powered-By, no CORS unless configured (it is not), no
// secret in a configuration error printed by the real process.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildTestApp } from './helpers/app.js';
import { ADMIN, seedKey } from './helpers/keys.js';
import { ROOT } from './helpers/server-process.js';

describe('response headers', () => {
  it('no X-Powered-By or Server banner; no CORS headers for a foreign Origin, and a preflight is refused', async () => {
    const app = await buildTestApp();
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    const origin = 'https://evil.example';
    for (const url of ['/api/v1/health', '/api/v1/apikeys', '/api/v1/userinfo', '/openapi.json', '/docs', '/no-such-route']) {
      const res = await app.inject({ method: 'GET', url, headers: { ...admin.headers, origin } });
      expect(res.headers['x-powered-by'], url).toBeUndefined();
      expect(res.headers.server, url).toBeUndefined();
      for (const h of Object.keys(res.headers)) expect(h, url).not.toMatch(/^access-control-/);
    }
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/api/v1/apikeys',
      headers: { origin, 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'x-api-key' },
    });
    expect(preflight.statusCode).toBe(405);
    expect(preflight.headers['content-type']).toBe('application/problem+json');
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    // JSON replies are never sniffed as something else.
    const res = await app.inject({ method: 'GET', url: '/api/v1/apikeys', headers: admin.headers });
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  });
});

describe('configuration errors from the real process', () => {
  it('exit 2 naming each bad variable, never its value', async () => {
    const secrets = { DATABASE_URL: 'mysql://u:db-pass-4711@h/x', REDIS_URL: 'ftp://:redis-pass-4711@h', JIM_INFRASTRUCTURE_API_KEY: 'jim_ak_secret4711secret4711secret4711' };
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, ...secrets, PORT: 'not-a-port' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(2);
    expect(out).toMatch(/DATABASE_URL/);
    expect(out).toMatch(/REDIS_URL/);
    expect(out).toMatch(/PORT/);
    for (const v of ['db-pass-4711', 'redis-pass-4711', 'secret4711']) expect(out).not.toContain(v);
  });
});
