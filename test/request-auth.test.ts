// Request authentication is one unit a route can call without the authorize hook (as a verify
// endpoint will): the same answers, budgets and events as the hook.
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp } from './helpers/app.js';
import { ADMIN, READER, seedKey, type SeededKey } from './helpers/keys.js';

let app: App;
let reader: SeededKey;
let admin: SeededKey;

beforeAll(async () => {
  app = await buildTestApp({ ready: false, env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_IP_MAX: '2' } });
  app.get('/probe/whoami', async (req, reply) => {
    const principal = await app.requestAuth.authenticate(req, reply, 'apikeys.write');
    return { id: principal.id, sameAsRequest: req.principal?.id === principal.id };
  });
  await app.ready();
  reader = await seedKey(app, { roleIds: [READER] });
  admin = await seedKey(app, { roleIds: [ADMIN] });
});

describe('requestAuth.authenticate', () => {
  it('returns the principal of a key holding the permission, and sets req.principal', async () => {
    const res = await app.inject({ method: 'GET', url: '/probe/whoami', headers: admin.headers });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ id: admin.id, sameAsRequest: true });
    expect(res.headers['ratelimit-limit']).toBeUndefined(); // the key's own budget applies, its headers once half is used
  });

  it('refuses as the hook does: 403 without the permission, 401 without a key, then 429 from that address', async () => {
    const forbidden = await app.inject({ method: 'GET', url: '/probe/whoami', headers: reader.headers });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toMatchObject({ code: 'FORBIDDEN', detail: 'This requires the apikeys.write permission, which your key does not have.' });
    const ip = '198.51.100.42';
    for (let i = 0; i < 2; i++) expect((await app.inject({ method: 'GET', url: '/probe/whoami', remoteAddress: ip })).json().code).toBe('UNAUTHENTICATED');
    expect((await app.inject({ method: 'GET', url: '/probe/whoami', remoteAddress: ip })).statusCode).toBe(429);
    expect((await app.inject({ method: 'GET', url: '/probe/whoami', headers: admin.headers, remoteAddress: ip })).statusCode).toBe(200);
  });
});
