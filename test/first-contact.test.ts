// The first minutes with a new server: the root sends a browser to the explorer, the version
// Connect-JIM asks for, and one log line saying how to get a first key when there is none.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FIRST_KEY_HINT } from '../src/services/bootstrap.js';
import { buildTestApp, captureLogs, freshDatabase } from './helpers/app.js';
import { ADMIN, READER, seedKey, sql } from './helpers/keys.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

describe('GET /', () => {
  it('redirects to the explorer', async () => {
    const app = await buildTestApp();
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await app.inject({ method, url: '/' });
      expect(res.statusCode, method).toBe(302);
      expect(res.headers.location).toBe('/docs');
    }
  });
});

describe('GET /api/v1/health/version', () => {
  it('is anonymous, says product and version, and ignores whatever key Connect-JIM sends', async () => {
    const app = await buildTestApp();
    for (const headers of [{}, { 'x-api-key': 'jim_ak_not-a-real-key-not-a-real-key', accept: 'application/json', 'content-type': 'application/json' }]) {
      const res = await app.inject({ method: 'GET', url: '/api/v1/health/version', headers });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.json()).toEqual({ product: 'keyward', version: pkg.version });
    }
    expect((await app.inject({ method: 'GET', url: '/api/health/version' })).json().version).toBe(pkg.version);
    expect(app.swagger()).toMatchObject({ info: { version: pkg.version } });
  });
});

describe('a server with no usable key', () => {
  const hints = (logs: ReturnType<typeof captureLogs>) => logs.records().filter((r) => r.msg === FIRST_KEY_HINT && r.level === 40).length;

  it('logs one line saying how to get the first key', async () => {
    const url = await freshDatabase();
    const logs = captureLogs();
    await buildTestApp({ databaseUrl: url, env: { LOG_LEVEL: 'info' }, logStream: logs.stream });
    expect(hints(logs)).toBe(1);
    expect(FIRST_KEY_HINT).toMatch(/npm run --silent keys:create -- --name admin --role-ids 1/);
    expect(FIRST_KEY_HINT).toMatch(/JIM_INFRASTRUCTURE_API_KEY/);
  });

  it('counts only enabled, unexpired keys that can create keys', async () => {
    const url = await freshDatabase();
    const seeding = await buildTestApp({ databaseUrl: url });
    await seedKey(seeding, { roleIds: [READER] });
    await seedKey(seeding, { roleIds: [ADMIN], isEnabled: false });
    const expired = await seedKey(seeding, { roleIds: [ADMIN] });
    await sql(url, "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1", [expired.id]);
    const logs = captureLogs();
    await buildTestApp({ databaseUrl: url, env: { LOG_LEVEL: 'info' }, logStream: logs.stream });
    expect(hints(logs)).toBe(1);

    await seedKey(seeding, { roleIds: [ADMIN] });
    const after = captureLogs();
    await buildTestApp({ databaseUrl: url, env: { LOG_LEVEL: 'info' }, logStream: after.stream });
    expect(hints(after)).toBe(0);
  });

  it('says nothing once the infrastructure key exists', async () => {
    const logs = captureLogs();
    await buildTestApp({ databaseUrl: await freshDatabase(), env: { LOG_LEVEL: 'info', JIM_INFRASTRUCTURE_API_KEY: `jim_ak_${'ab'.repeat(20)}` }, logStream: logs.stream });
    expect(hints(logs)).toBe(0);
  });
});
