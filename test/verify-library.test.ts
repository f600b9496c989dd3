// @keyward/verify (packages/verify), against an in-test stand-in for keyward's verify protocol:
// a node:http server on a real port with POST /api/v1/apikeys/verify and the Server-Sent Events
// stream GET /api/v1/apikeys/verify/events (real SSE framing, heartbeats, invalidate and reset
// events). The stand-in counts the verify calls it answers, so a cache hit is one it never saw.
// The library is imported by its package name: the build in packages/verify/dist (`npm test`
// builds it first; run `npm run build -w @keyward/verify` before running this file alone).
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BlockList, isIP, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createVerifier,
  grants,
  isPermissionName,
  keywardMiddleware,
  KeywardRequestError,
  KeywardUnavailableError,
  missingPermissions,
  type KeywardRequest,
  type Verifier,
  type VerifierOptions,
  type VerifyResult,
} from '@keyward/verify';
import { keywardFastify } from '@keyward/verify/fastify';
import { ROOT } from './helpers/server-process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newKey = () => `jim_ak_${randomBytes(32).toString('hex')}`;

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// ---- the stand-in ---------------------------------------------------------------------------

interface StandInKey {
  secret: string;
  keyId: string;
  name: string;
  roles: Array<{ id: number; name: string }>;
  permissions: string[];
  expiresAt: string | null;
  enabled: boolean;
  metadata: Record<string, unknown>;
  rateLimited?: boolean;
  /** The key's address allowlist (null or absent: any address). */
  allowedCidrs?: string[] | null;
  /** The key's own request limit: counted by the stand-in on every verify (no window reset). */
  rateLimit?: { limit: number; windowSeconds: number } | null;
  /** Verifies counted against rateLimit. */
  used?: number;
  /** A previous secret still accepted until previousSecretExpiresAt (a rotation's grace period). */
  previousSecret?: string;
  previousSecretExpiresAt?: string;
  /** Fields laid over the key details of every answer (a buggy keyward). */
  extra?: Record<string, unknown>;
}

/** keyward's rule, written again here (not the library's): `*`, `prefix.*` below it, or exact. */
function standInGrants(held: string[], p: string): boolean {
  if (held.includes('*') || held.includes(p)) return true;
  const parts = p.split('.');
  for (let i = 1; i < parts.length; i++) if (held.includes(`${parts.slice(0, i).join('.')}.*`)) return true;
  return false;
}

/** keyward's allowlist rule, written again with node's BlockList (not ipaddr.js, as the library): no address, none inside. */
function standInAllows(cidrs: string[], clientIp: string | undefined): boolean {
  if (clientIp === undefined) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(clientIp);
  const address = mapped ? mapped[1]! : clientIp;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net, bits] = cidr.split('/');
    if (net !== undefined && isIP(net) !== 0) list.addSubnet(net, Number(bits), isIP(net) === 4 ? 'ipv4' : 'ipv6');
  }
  return list.check(address, isIP(address) === 4 ? 'ipv4' : 'ipv6');
}

async function startStandIn(opts: { heartbeatMs?: number; maxAgeMs?: number } = {}) {
  const consumerKey = newKey();
  const keys = new Map<string, StandInKey>();
  const streams = new Set<ServerResponse>();
  const state = {
    heartbeatMs: opts.heartbeatMs ?? 100,
    verifyCalls: 0,
    verifyBodies: [] as any[],
    streamConnects: 0,
    streamApiKeys: [] as Array<string | undefined>,
    /** Status of the verify endpoint (200 answers; anything else is a problem+json). */
    verifyStatus: 200,
    /** Status a new stream connection gets (200 streams). */
    streamStatus: 200,
    heartbeats: true,
    /** While set, verify requests wait for it before answering. */
    gate: null as Promise<void> | null,
    /** Never answer verify requests. */
    hang: false,
    /** Echo the presented key back in a 401 problem's detail (a hostile or buggy keyward). */
    echoKeyIn401: false,
    /** Answer as a keyward from before allowlists, per-key limits and grace periods (no allowedCidrs, rateLimit, secretExpiresAt). */
    legacy: false,
  };
  const problem = (res: ServerResponse, status: number, code: string, detail: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/problem+json', ...headers });
    res.end(JSON.stringify({ type: 'about:blank', title: String(status), status, detail, code }));
  };
  const sse = (res: ServerResponse, event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);

  async function onVerify(req: IncomingMessage, res: ServerResponse) {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    if (req.headers['x-api-key'] !== consumerKey) return problem(res, 401, 'API_KEY_INVALID', 'The API key is not valid.');
    if (req.headers['content-type'] !== 'application/json') return problem(res, 400, 'VALIDATION_FAILED', 'JSON expected');
    const body = JSON.parse(raw);
    state.verifyCalls++;
    state.verifyBodies.push(body);
    if (state.hang) return; // answered never (the socket is destroyed when the stand-in stops)
    if (state.gate) await state.gate;
    if (state.echoKeyIn401) return problem(res, 401, 'API_KEY_INVALID', `bad key ${body.key}`);
    if (state.verifyStatus !== 200) return problem(res, state.verifyStatus, state.verifyStatus === 429 ? 'RATE_LIMITED' : 'OVERLOADED', 'try later', { 'retry-after': '3' });
    let found = keys.get(body.key);
    let previous = false;
    if (!found) {
      found = [...keys.values()].find((x) => x.previousSecret === body.key);
      previous = found !== undefined;
      if (found && Date.parse(found.previousSecretExpiresAt!) <= Date.now()) found = undefined; // the grace period is over
    }
    const k = found;
    let result: Record<string, unknown>;
    if (!k) result = { valid: false, code: 'NOT_FOUND' };
    else {
      const details: Record<string, unknown> = { keyId: k.keyId, name: k.name, roles: k.roles, permissions: k.permissions, expiresAt: k.expiresAt, metadata: k.metadata };
      if (!state.legacy) {
        details.allowedCidrs = k.allowedCidrs ?? null;
        details.rateLimit = k.rateLimit ?? null;
        if (previous) details.secretExpiresAt = k.previousSecretExpiresAt;
      }
      Object.assign(details, k.extra);
      const missing = ((body.requiredPermissions ?? []) as string[]).filter((p) => !standInGrants(k.permissions, p));
      // keyward's order: DISABLED, EXPIRED, IP_NOT_ALLOWED, RATE_LIMITED, then the permissions.
      if (!k.enabled) result = { valid: false, code: 'DISABLED', ...details };
      else if (k.expiresAt !== null && Date.parse(k.expiresAt) <= Date.now()) result = { valid: false, code: 'EXPIRED', ...details };
      else if (k.allowedCidrs && !standInAllows(k.allowedCidrs, body.clientIp)) result = { valid: false, code: 'IP_NOT_ALLOWED', ...details };
      else if (k.rateLimited) result = { valid: false, code: 'RATE_LIMITED', retryAfterSeconds: 7, ...details };
      else if (k.rateLimit && (k.used = (k.used ?? 0) + 1) > k.rateLimit.limit) result = { valid: false, code: 'RATE_LIMITED', retryAfterSeconds: k.rateLimit.windowSeconds, ...details };
      else if (missing.length > 0) result = { valid: false, code: 'INSUFFICIENT_PERMISSIONS', missingPermissions: missing, ...details };
      else result = { valid: true, code: 'VALID', ...details };
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(result));
  }

  function onEvents(req: IncomingMessage, res: ServerResponse) {
    state.streamApiKeys.push(req.headers['x-api-key'] as string | undefined);
    if (req.headers['x-api-key'] !== consumerKey) return problem(res, 401, 'API_KEY_INVALID', 'The API key is not valid.');
    if (state.streamStatus !== 200) return problem(res, state.streamStatus, 'LISTENER_DOWN', 'listener down');
    state.streamConnects++;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    sse(res, 'reset', { reason: 'connected', heartbeatMs: state.heartbeatMs, ...(opts.maxAgeMs ? { maxAgeMs: opts.maxAgeMs } : {}) });
    streams.add(res);
    const timer = setInterval(() => {
      if (state.heartbeats) sse(res, 'heartbeat', {});
    }, state.heartbeatMs);
    res.on('close', () => {
      clearInterval(timer);
      streams.delete(res);
    });
  }

  const server: Server = createServer((req, res) => {
    const url = req.url ?? '';
    if (req.method === 'POST' && url === '/api/v1/apikeys/verify') return void onVerify(req, res).catch(() => res.destroy());
    if (req.method === 'GET' && url === '/api/v1/apikeys/verify/events') return onEvents(req, res);
    problem(res, 404, 'NOT_FOUND', 'no such route');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    consumerKey,
    state,
    streams,
    addKey(over: Partial<StandInKey> = {}): StandInKey {
      const k: StandInKey = {
        secret: newKey(),
        keyId: randomUUID(),
        name: 'caller',
        roles: [{ id: 7, name: 'Orders' }],
        permissions: ['orders.read'],
        expiresAt: null,
        enabled: true,
        metadata: { team: 'checkout' },
        ...over,
      };
      keys.set(k.secret, k);
      return k;
    },
    invalidate(keyIds: string[]) {
      for (const s of streams) sse(s, 'invalidate', { keyIds });
    },
    /** A reset that is not "connected": the stream ends after it, as keyward's does. */
    resetAll(reason = 'listener-lost') {
      for (const s of streams) {
        sse(s, 'reset', { reason });
        s.end();
      }
    },
    /** The streams' sockets destroyed, as a crash or a network failure would. */
    dropStreams() {
      for (const s of streams) s.destroy();
    },
    /** Verify requests wait until the returned function is called. */
    hold(): () => void {
      let release!: () => void;
      state.gate = new Promise<void>((r) => (release = r));
      return () => {
        state.gate = null;
        release();
      };
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

type StandIn = Awaited<ReturnType<typeof startStandIn>>;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(options: Partial<VerifierOptions> = {}, standInOpts: { heartbeatMs?: number; maxAgeMs?: number } = {}) {
  const standIn = await startStandIn(standInOpts);
  cleanups.push(() => standIn.stop());
  const verifier = createVerifier({ url: standIn.url, apiKey: standIn.consumerKey, reconnectMinMs: 20, reconnectMaxMs: 200, ...options });
  cleanups.push(() => verifier.close());
  return { standIn, verifier };
}

/** A verifier whose stream is live and settled: the next answer can be stored. */
async function live(options: Partial<VerifierOptions> = {}, standInOpts: { heartbeatMs?: number; maxAgeMs?: number } = {}) {
  const s = await setup(options, standInOpts);
  expect(await s.verifier.ready(5_000)).toBe(true);
  return s;
}

async function expectKeyNowhere(err: unknown, ...secrets: string[]) {
  const e = err as Error;
  const texts = [e.message, String(e), e.stack ?? '', JSON.stringify(e), JSON.stringify(Object.entries(e))];
  for (const t of texts) for (const s of secrets) expect(t).not.toContain(s);
}

// ---- tests ----------------------------------------------------------------------------------

describe('permission rules (keyward semantics)', () => {
  it('grants * for everything, prefix.* for every name below it and itself, otherwise exact names only', () => {
    expect(grants(['*'], 'orders.read')).toBe(true);
    expect(grants(['*'], '*')).toBe(true);
    expect(grants(['orders.*'], 'orders.read')).toBe(true);
    expect(grants(['orders.*'], 'orders.items.write')).toBe(true);
    expect(grants(['orders.*'], 'orders.*')).toBe(true);
    expect(grants(['orders.items.*'], 'orders.items.write')).toBe(true);
    expect(grants(['orders.items.*'], 'orders.read')).toBe(false);
    expect(grants(['orders.*'], 'ordersx.read')).toBe(false);
    expect(grants(['orders.*'], '*')).toBe(false);
    expect(grants(['orders.read'], 'orders.write')).toBe(false);
    expect(grants(['orders.read'], 'orders.read')).toBe(true);
    expect(grants([], 'orders.read')).toBe(false);
    expect(missingPermissions(['orders.read', 'billing.*'], ['orders.write', 'billing.invoices.read', 'orders.read'])).toEqual(['orders.write']);
    for (const ok of ['*', 'orders.read', 'orders.*', 'orders.items.write', 'a1.b_c-d']) expect(isPermissionName(ok), ok).toBe(true);
    for (const bad of ['orders', 'Orders.read', 'orders.', '.read', 'orders.**', '', 'x.' + 'y'.repeat(100)]) expect(isPermissionName(bad), bad).toBe(false);
  });

  it('verify refuses (TypeError, keyward not asked) a permission name or a client address keyward would reject', async () => {
    const { standIn, verifier } = await setup({ cache: false });
    const k = standIn.addKey();
    await expect(verifier.verify(k.secret, { requiredPermissions: ['Orders.Read'] })).rejects.toThrow(TypeError);
    await expect(verifier.verify(k.secret, { clientIp: 'somewhere' })).rejects.toThrow(/clientIp/);
    expect(() => keywardMiddleware(verifier, { requiredPermissions: ['orders'] })).toThrow(/not a permission name/);
    expect(standIn.state.verifyCalls).toBe(0);
    expect(await verifier.verify(k.secret, { clientIp: '::ffff:203.0.113.7' })).toMatchObject({ code: 'VALID' });
  });
});

describe('createVerifier: the cache', () => {
  it('answers a second verify from the cache, judging permissions locally (one call to keyward)', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey({ permissions: ['orders.*'] });
    const first = await verifier.verify(k.secret, { requiredPermissions: ['orders.read'], clientIp: '203.0.113.7' });
    expect(first).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId, name: 'caller', roles: [{ id: 7, name: 'Orders' }], permissions: ['orders.*'], expiresAt: null, metadata: { team: 'checkout' } });
    expect(standIn.state.verifyBodies[0]).toEqual({ key: k.secret, requiredPermissions: ['orders.read'], clientIp: '203.0.113.7' });
    expect(await verifier.verify(k.secret, { requiredPermissions: ['orders.read'] })).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId });
    expect(await verifier.verify(k.secret, { requiredPermissions: ['orders.items.write', 'orders.*'] })).toMatchObject({ valid: true, code: 'VALID' });
    const refused = await verifier.verify(k.secret, { requiredPermissions: ['orders.read', 'billing.read'] });
    expect(refused).toMatchObject({ valid: false, code: 'INSUFFICIENT_PERMISSIONS', keyId: k.keyId, missingPermissions: ['billing.read'] });
    expect(await verifier.verify(k.secret)).toMatchObject({ valid: true, code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(1);
    expect(verifier.stats()).toMatchObject({ hits: 4, misses: 1, requests: 1, size: 1, live: true, connects: 1 });
    // The stream carried the consumer's key; a hit returns a copy a caller cannot spoil.
    expect(standIn.state.streamApiKeys).toEqual([standIn.consumerKey]);
    const hit = await verifier.verify(k.secret);
    expect(() => ((hit.permissions as string[]).push('*'))).toThrow();
    (hit as { valid: boolean }).valid = false;
    expect(await verifier.verify(k.secret)).toMatchObject({ valid: true });
  });

  it('caches INSUFFICIENT_PERMISSIONS, DISABLED and EXPIRED results, and a NOT_FOUND only for negativeTtlMs; never RATE_LIMITED', async () => {
    const { standIn, verifier } = await live({ negativeTtlMs: 1_000 });
    const narrow = standIn.addKey({ permissions: ['orders.read'] });
    const disabled = standIn.addKey({ enabled: false });
    const expired = standIn.addKey({ expiresAt: new Date(Date.now() - 1000).toISOString() });
    const limited = standIn.addKey({ rateLimited: true });
    const unknown = newKey();
    for (let i = 0; i < 2; i++) {
      expect(await verifier.verify(narrow.secret, { requiredPermissions: ['orders.write'] })).toMatchObject({ code: 'INSUFFICIENT_PERMISSIONS', missingPermissions: ['orders.write'] });
      expect(await verifier.verify(disabled.secret)).toMatchObject({ valid: false, code: 'DISABLED', keyId: disabled.keyId });
      expect(await verifier.verify(expired.secret)).toMatchObject({ valid: false, code: 'EXPIRED', keyId: expired.keyId });
      expect(await verifier.verify(unknown)).toEqual({ valid: false, code: 'NOT_FOUND' });
      expect(await verifier.verify(limited.secret)).toMatchObject({ valid: false, code: 'RATE_LIMITED', retryAfterSeconds: 7 });
    }
    // Each once, except the rate-limited key (twice); the cached INSUFFICIENT answers for any permission.
    expect(standIn.state.verifyCalls).toBe(6);
    expect(await verifier.verify(narrow.secret, { requiredPermissions: ['orders.read'] })).toMatchObject({ valid: true, code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(6);
    await sleep(1_050); // past negativeTtlMs: the NOT_FOUND is asked again
    expect(await verifier.verify(unknown)).toEqual({ valid: false, code: 'NOT_FOUND' });
    expect(standIn.state.verifyCalls).toBe(7);
    // A key not in keyward's shape is NOT_FOUND without asking.
    expect(await verifier.verify('not-a-key')).toEqual({ valid: false, code: 'NOT_FOUND' });
    expect(await verifier.verify(`jim_ak_${'a'.repeat(250)}`)).toEqual({ valid: false, code: 'NOT_FOUND' });
    expect(standIn.state.verifyCalls).toBe(7);
  });

  it('checks expiry against the clock on every hit', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey({ expiresAt: new Date(Date.now() + 600).toISOString() });
    expect(await verifier.verify(k.secret)).toMatchObject({ valid: true, code: 'VALID' });
    expect(await verifier.verify(k.secret)).toMatchObject({ valid: true, code: 'VALID' });
    await sleep(650);
    expect(await verifier.verify(k.secret, { requiredPermissions: ['orders.read'] })).toMatchObject({ valid: false, code: 'EXPIRED', keyId: k.keyId });
    expect(standIn.state.verifyCalls).toBe(1);
  });

  it('keeps entries at most cacheTtlMs, at most cacheMaxEntries (least recently used go first), and caps the options at their defaults', async () => {
    const { standIn, verifier } = await live({ cacheTtlMs: 300, cacheMaxEntries: 2 });
    const [a, b, c] = [standIn.addKey(), standIn.addKey(), standIn.addKey()];
    await verifier.verify(a.secret);
    await verifier.verify(b.secret);
    await verifier.verify(a.secret); // a is now the most recently used
    await verifier.verify(c.secret); // evicts b
    expect(verifier.stats().size).toBe(2);
    expect(standIn.state.verifyCalls).toBe(3);
    await verifier.verify(a.secret);
    expect(standIn.state.verifyCalls).toBe(3);
    await verifier.verify(b.secret);
    expect(standIn.state.verifyCalls).toBe(4);
    await sleep(320);
    await verifier.verify(b.secret);
    expect(standIn.state.verifyCalls).toBe(5);

    const lax = createVerifier({ url: standIn.url, apiKey: standIn.consumerKey, cacheTtlMs: 1e9, negativeTtlMs: 1e9, settleMs: 0, cache: false });
    expect(lax.options).toMatchObject({ cacheTtlMs: 300_000, negativeTtlMs: 2_000, settleMs: 1_000, cache: false });
    expect(createVerifier({ url: standIn.url, apiKey: 'x', cache: false }).options).toMatchObject({
      timeoutMs: 2_000, cacheMaxEntries: 10_000, cacheTtlMs: 300_000, negativeTtlMs: 2_000, settleMs: 1_000, cache: false,
    });
  });

  it('with cache: false, asks keyward every time and opens no stream', async () => {
    const { standIn, verifier } = await setup({ cache: false });
    const k = standIn.addKey();
    expect(await verifier.ready()).toBe(true);
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(2);
    expect(standIn.state.streamConnects).toBe(0);
    expect(verifier.stats()).toMatchObject({ live: false, size: 0 });
  });
});

describe('createVerifier: address allowlists, per-key limits and grace-period secrets', () => {
  const FENCE = ['10.0.0.0/8', '2001:db8::/32'];

  it('judges a cached key with an allowlist by the client address: inside, outside, none, IPv4-mapped IPv6 (as keyward does, one call)', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey({ permissions: ['orders.read'], allowedCidrs: FENCE });
    const first = await verifier.verify(k.secret, { clientIp: '10.1.2.3' });
    expect(first).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId, allowedCidrs: FENCE, rateLimit: null });
    expect(standIn.state.verifyBodies[0]).toEqual({ key: k.secret, clientIp: '10.1.2.3' });
    const verdicts: Array<[string | undefined, string]> = [
      ['10.200.0.1', 'VALID'],
      ['10.255.255.255', 'VALID'],
      ['2001:db8:1::5', 'VALID'],
      ['::ffff:10.9.9.9', 'VALID'],
      ['11.0.0.1', 'IP_NOT_ALLOWED'],
      ['192.0.2.1', 'IP_NOT_ALLOWED'],
      ['::ffff:192.0.2.1', 'IP_NOT_ALLOWED'],
      ['2001:db9::1', 'IP_NOT_ALLOWED'],
      ['::1', 'IP_NOT_ALLOWED'],
      [undefined, 'IP_NOT_ALLOWED'],
    ];
    for (const [clientIp, code] of verdicts) {
      const r = await verifier.verify(k.secret, clientIp === undefined ? {} : { clientIp });
      expect(r, String(clientIp)).toMatchObject({ valid: code === 'VALID', code });
      if (code === 'IP_NOT_ALLOWED') {
        expect(r, String(clientIp)).toMatchObject({ keyId: k.keyId, name: 'caller', roles: [{ id: 7, name: 'Orders' }], permissions: ['orders.read'], metadata: { team: 'checkout' }, allowedCidrs: FENCE });
        expect(r.missingPermissions).toBeUndefined();
      }
    }
    // keyward's order: the address before the permissions.
    expect(await verifier.verify(k.secret, { clientIp: '192.0.2.1', requiredPermissions: ['billing.read'] })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(await verifier.verify(k.secret, { clientIp: '10.0.0.1', requiredPermissions: ['billing.read'] })).toMatchObject({ code: 'INSUFFICIENT_PERMISSIONS', missingPermissions: ['billing.read'] });
    expect(standIn.state.verifyCalls).toBe(1);
    expect(verifier.stats()).toMatchObject({ hits: verdicts.length + 2, misses: 1, size: 1 });
    // The same verdicts as keyward's own, asked uncached.
    const direct = createVerifier({ url: standIn.url, apiKey: standIn.consumerKey, cache: false });
    cleanups.push(() => direct.close());
    for (const [clientIp, code] of verdicts) expect((await direct.verify(k.secret, clientIp === undefined ? {} : { clientIp })).code, String(clientIp)).toBe(code);
  });

  it('stores an IP_NOT_ALLOWED answer as an active key, judged per address later; one without the allowlist is not stored', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey({ allowedCidrs: ['203.0.113.0/24'] });
    expect(await verifier.verify(k.secret)).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED', keyId: k.keyId });
    expect(standIn.state.verifyBodies[0]).toEqual({ key: k.secret });
    expect(verifier.stats().size).toBe(1);
    expect(await verifier.verify(k.secret, { clientIp: '203.0.113.7' })).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId });
    expect(await verifier.verify(k.secret, { clientIp: '198.51.100.7' })).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED' });
    expect(standIn.state.verifyCalls).toBe(1);
    // A refusal that does not say which addresses are allowed cannot be judged for another one.
    standIn.state.legacy = true;
    const other = standIn.addKey({ allowedCidrs: ['203.0.113.0/24'] });
    expect(await verifier.verify(other.secret, { clientIp: '198.51.100.7' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(await verifier.verify(other.secret, { clientIp: '203.0.113.7' })).toMatchObject({ code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(3);
  });

  it('cached() judges the allowlist with the clientIp it is given (read only for such a key); without one it refuses', async () => {
    const { standIn, verifier } = await live();
    const fenced = standIn.addKey({ permissions: ['orders.read'], allowedCidrs: FENCE });
    const open = standIn.addKey({ permissions: ['orders.read'] });
    await verifier.verify(fenced.secret, { clientIp: '10.0.0.7' });
    await verifier.verify(open.secret);
    expect(standIn.state.verifyCalls).toBe(2);
    const inside = verifier.cached(fenced.secret, { clientIp: '10.0.0.7' });
    expect(inside).toMatchObject({ valid: true, code: 'VALID', keyId: fenced.keyId });
    expect(Object.isFrozen(inside)).toBe(true);
    const none = verifier.cached(fenced.secret);
    expect(none).toMatchObject({ valid: false, code: 'IP_NOT_ALLOWED', keyId: fenced.keyId, allowedCidrs: FENCE });
    expect(Object.isFrozen(none)).toBe(true);
    expect(verifier.cached(fenced.secret, { clientIp: '192.0.2.1' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(verifier.cached(fenced.secret, { clientIp: '::ffff:10.0.0.8' })).toMatchObject({ code: 'VALID' });
    expect(verifier.cached(fenced.secret, { clientIp: '2001:db8::9', requiredPermissions: ['orders.write'] })).toMatchObject({ code: 'INSUFFICIENT_PERMISSIONS', missingPermissions: ['orders.write'] });
    // Not an address: the cache cannot answer (verify would reject it).
    expect(verifier.cached(fenced.secret, { clientIp: 'somewhere' })).toBeUndefined();
    await expect(verifier.verify(fenced.secret, { clientIp: 'somewhere' })).rejects.toThrow(TypeError);
    // The client address is read for the key with an allowlist only.
    let reads = 0;
    const ask = { requiredPermissions: ['orders.read'], get clientIp() { reads++; return '10.1.1.1'; } };
    expect(verifier.cached(open.secret, ask)).toMatchObject({ code: 'VALID', keyId: open.keyId });
    expect(reads).toBe(0);
    expect(verifier.cached(fenced.secret, ask)).toMatchObject({ code: 'VALID', keyId: fenced.keyId });
    expect(reads).toBe(1);
    expect(standIn.state.verifyCalls).toBe(2);
  });

  it("keeps keyward's order on a hit: a disabled or expired key with an allowlist is DISABLED or EXPIRED from any address", async () => {
    const { standIn, verifier } = await live();
    const expiring = standIn.addKey({ allowedCidrs: ['10.0.0.0/8'], expiresAt: new Date(Date.now() + 600).toISOString() });
    const disabled = standIn.addKey({ allowedCidrs: ['10.0.0.0/8'], enabled: false });
    expect(await verifier.verify(expiring.secret, { clientIp: '10.0.0.1' })).toMatchObject({ code: 'VALID' });
    expect(await verifier.verify(expiring.secret, { clientIp: '192.0.2.1' })).toMatchObject({ code: 'IP_NOT_ALLOWED' });
    expect(await verifier.verify(disabled.secret, { clientIp: '10.0.0.1' })).toMatchObject({ code: 'DISABLED' });
    expect(await verifier.verify(disabled.secret, { clientIp: '192.0.2.1' })).toMatchObject({ code: 'DISABLED' });
    expect(verifier.cached(disabled.secret)).toMatchObject({ code: 'DISABLED' });
    await sleep(650);
    expect(await verifier.verify(expiring.secret, { clientIp: '192.0.2.1' })).toMatchObject({ valid: false, code: 'EXPIRED', keyId: expiring.keyId });
    expect(verifier.cached(expiring.secret)).toMatchObject({ code: 'EXPIRED' });
    expect(standIn.state.verifyCalls).toBe(2);
  });

  it('does not cache a result whose allowlist it cannot read as keyward does', async () => {
    const { standIn, verifier } = await live();
    const malformed: unknown[] = [['10.0.0.0/33'], ['10/8'], ['010.0.0.0/8'], ['not-an-address/8'], ['10.0.0.0'], ['::ffff:10.0.0.0/104'], ['fe80::%eth0/64'], [5], '10.0.0.0/8', { cidr: '10.0.0.0/8' }];
    for (const allowedCidrs of malformed) {
      const k = standIn.addKey({ extra: { allowedCidrs } });
      const before = standIn.state.verifyCalls;
      expect(await verifier.verify(k.secret, { clientIp: '10.0.0.1' }), JSON.stringify(allowedCidrs)).toMatchObject({ code: 'VALID' });
      expect(verifier.cached(k.secret, { clientIp: '10.0.0.1' }), JSON.stringify(allowedCidrs)).toBeUndefined();
      await verifier.verify(k.secret, { clientIp: '10.0.0.1' });
      expect(standIn.state.verifyCalls - before, JSON.stringify(allowedCidrs)).toBe(2);
    }
    expect(verifier.stats().size).toBe(0);
    // Well-formed, IPv4 and IPv6 (the control): cached.
    const ok = standIn.addKey({ allowedCidrs: ['10.0.0.0/8', '0.0.0.0/0', '2001:db8::/32', '::/0'] });
    await verifier.verify(ok.secret, { clientIp: '10.0.0.1' });
    expect(verifier.cached(ok.secret, { clientIp: '192.0.2.1' })).toMatchObject({ code: 'VALID' });
    expect(verifier.stats().size).toBe(1);
  });

  it('never caches a key with its own rateLimit: every verify asks keyward (concurrent ones too), which counts the limit', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey({ rateLimit: { limit: 3, windowSeconds: 60 } });
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) codes.push((await verifier.verify(k.secret, { clientIp: '203.0.113.7' })).code);
    expect(codes).toEqual(['VALID', 'VALID', 'VALID', 'RATE_LIMITED', 'RATE_LIMITED']);
    expect(standIn.state.verifyCalls).toBe(5);
    expect(await verifier.verify(k.secret)).toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 60, rateLimit: { limit: 3, windowSeconds: 60 } });
    expect(verifier.cached(k.secret)).toBeUndefined();
    expect(verifier.stats().size).toBe(0);
    // Concurrent verifies of one key and address are not answered by one request.
    const k2 = standIn.addKey({ rateLimit: { limit: 2, windowSeconds: 30 } });
    const release = standIn.hold();
    const calls = [0, 1, 2].map(() => verifier.verify(k2.secret, { clientIp: '203.0.113.7' }));
    await until('the first request', () => standIn.state.verifyCalls === 7);
    await sleep(30);
    release();
    const results = await Promise.all(calls);
    expect(results.map((r) => r.code).sort()).toEqual(['RATE_LIMITED', 'VALID', 'VALID']);
    expect(standIn.state.verifyCalls).toBe(9);
    expect(k2.used).toBe(3);
    // The control: a key on keyward's default limit is cached.
    const plain = standIn.addKey();
    await verifier.verify(plain.secret);
    await verifier.verify(plain.secret);
    expect(standIn.state.verifyCalls).toBe(10);
  });

  it('uses an entry for a grace-period secret no longer than its secretExpiresAt; keyward then answers NOT_FOUND', async () => {
    const { standIn, verifier } = await live();
    const previousSecret = newKey();
    const endsAt = new Date(Date.now() + 700).toISOString();
    const k = standIn.addKey({ previousSecret, previousSecretExpiresAt: endsAt });
    expect(await verifier.verify(previousSecret)).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId, secretExpiresAt: endsAt });
    expect(await verifier.verify(previousSecret)).toMatchObject({ valid: true, code: 'VALID', secretExpiresAt: endsAt });
    expect(verifier.cached(previousSecret)).toMatchObject({ code: 'VALID' });
    const current = await verifier.verify(k.secret);
    expect(current).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId });
    expect(current).not.toHaveProperty('secretExpiresAt');
    expect(standIn.state.verifyCalls).toBe(2);
    await sleep(Date.parse(endsAt) - Date.now() + 50);
    expect(verifier.cached(previousSecret)).toBeUndefined();
    expect(await verifier.verify(previousSecret)).toEqual({ valid: false, code: 'NOT_FOUND' });
    expect(standIn.state.verifyCalls).toBe(3);
    // The current secret's entry lives on.
    expect(await verifier.verify(k.secret)).toMatchObject({ code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(3);
    // A secretExpiresAt that is not a date: not cached.
    const odd = standIn.addKey({ extra: { secretExpiresAt: 'soon' } });
    await verifier.verify(odd.secret);
    await verifier.verify(odd.secret);
    expect(standIn.state.verifyCalls).toBe(5);
  });

  it('caches the answers of an older keyward (none of the new fields) as before', async () => {
    const { standIn, verifier } = await live();
    standIn.state.legacy = true;
    const k = standIn.addKey();
    const first = await verifier.verify(k.secret, { clientIp: '203.0.113.7' });
    expect(first).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId });
    for (const field of ['allowedCidrs', 'rateLimit', 'secretExpiresAt']) expect(first).not.toHaveProperty(field);
    expect(await verifier.verify(k.secret, { clientIp: '198.51.100.1' })).toMatchObject({ code: 'VALID' });
    expect(await verifier.verify(k.secret)).toMatchObject({ code: 'VALID' });
    expect(verifier.cached(k.secret)).toMatchObject({ code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(1);
  });
});

describe('createVerifier: the event stream', () => {
  it('an invalidate event drops the keys it names and no other', async () => {
    const { standIn, verifier } = await live();
    const [a, b] = [standIn.addKey(), standIn.addKey()];
    await verifier.verify(a.secret);
    await verifier.verify(b.secret);
    expect(verifier.stats().size).toBe(2);
    a.enabled = false;
    standIn.invalidate([a.keyId, randomUUID()]);
    await until('the invalidation', () => verifier.stats().size === 1);
    expect(await verifier.verify(a.secret)).toMatchObject({ code: 'DISABLED' });
    expect(await verifier.verify(b.secret)).toMatchObject({ code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(3);
  });

  it('a reset event (not "connected") drops every entry; the verifier reconnects and caches again', async () => {
    const { standIn, verifier } = await live();
    const [a, b] = [standIn.addKey(), standIn.addKey()];
    await verifier.verify(a.secret);
    await verifier.verify(b.secret);
    expect(verifier.stats().size).toBe(2);
    standIn.resetAll('listener-lost');
    await until('the reset', () => !verifier.stats().live);
    expect(verifier.stats().size).toBe(0);
    expect(await verifier.ready(5_000)).toBe(true);
    expect(standIn.state.streamConnects).toBe(2);
    await verifier.verify(a.secret);
    await verifier.verify(a.secret);
    expect(standIn.state.verifyCalls).toBe(3);
    expect(verifier.stats()).toMatchObject({ live: true, connects: 2, size: 1 });
  });

  it('losing the stream empties the cache; until it is live again nothing is cached and every verify asks keyward', async () => {
    const changes: Array<{ live: boolean; reason: string }> = [];
    const { standIn, verifier } = await live({ onStreamState: (s) => changes.push(s) });
    const k = standIn.addKey();
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(1);
    standIn.state.streamStatus = 503; // the instance's own listener is down: reconnects are refused
    standIn.dropStreams();
    await until('the loss', () => !verifier.stats().live);
    expect(verifier.stats().size).toBe(0);
    const before = standIn.state.verifyCalls;
    for (let i = 0; i < 3; i++) expect(await verifier.verify(k.secret)).toMatchObject({ code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(before + 3);
    expect(verifier.stats().size).toBe(0);
    await sleep(300); // reconnects keep being refused, and the verifier keeps trying
    expect(verifier.stats().live).toBe(false);
    standIn.state.streamStatus = 200;
    expect(await verifier.ready(5_000)).toBe(true);
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(before + 4);
    expect(changes.map((c) => c.live)).toEqual([true, false, true]);
    expect(changes[1].reason).toMatch(/^error/);
  });

  it('a stream that goes silent (no event for 2 × heartbeatMs + 1 s) counts as lost', async () => {
    const { standIn, verifier } = await live({}, { heartbeatMs: 100 });
    const k = standIn.addKey();
    await verifier.verify(k.secret);
    expect(verifier.stats().size).toBe(1);
    standIn.state.heartbeats = false; // the connection stays open, but says nothing
    const silentAt = Date.now();
    await sleep(700);
    expect(verifier.stats()).toMatchObject({ live: true, size: 1 }); // within 1.2 s of the last event: still live
    await until('the missed heartbeat', () => !verifier.stats().live, 2_000);
    expect(Date.now() - silentAt).toBeGreaterThanOrEqual(1_050); // the last heartbeat came at most 100 ms before
    expect(verifier.stats().size).toBe(0);
    await until('a new stream', () => standIn.state.streamConnects >= 2, 2_000);
  });

  it('a stream refused on connect (503) leaves the verifier answering by asking keyward', async () => {
    const standIn = await startStandIn();
    cleanups.push(() => standIn.stop());
    standIn.state.streamStatus = 503;
    const verifier = createVerifier({ url: standIn.url, apiKey: standIn.consumerKey, reconnectMinMs: 20, reconnectMaxMs: 100 });
    cleanups.push(() => verifier.close());
    const k = standIn.addKey();
    expect(await verifier.ready(300)).toBe(false);
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(2);
    expect(verifier.stats()).toMatchObject({ live: false, size: 0, hits: 0 });
  });
});

describe('createVerifier: the race guard', () => {
  it('does not store an answer when its key was invalidated while the request was in flight, or within settleMs before it started', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey();
    const release = standIn.hold();
    const pending = verifier.verify(k.secret);
    await until('the request', () => standIn.state.verifyCalls === 1);
    standIn.invalidate([k.keyId]);
    await sleep(50);
    release();
    expect(await pending).toMatchObject({ code: 'VALID' });
    expect(verifier.stats().size).toBe(0);
    // Started within settleMs after the invalidate: not stored either.
    await verifier.verify(k.secret);
    expect(verifier.stats().size).toBe(0);
    expect(standIn.state.verifyCalls).toBe(2);
    await sleep(1_050);
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(3);
    expect(verifier.stats().size).toBe(1);
  });

  it('an invalidate of another key does not block storing', async () => {
    const { standIn, verifier } = await live();
    const [a, b] = [standIn.addKey(), standIn.addKey()];
    const release = standIn.hold();
    const pending = verifier.verify(a.secret);
    await until('the request', () => standIn.state.verifyCalls === 1);
    standIn.invalidate([b.keyId]);
    await sleep(50);
    release();
    await pending;
    await verifier.verify(a.secret);
    expect(standIn.state.verifyCalls).toBe(1);
  });

  it('does not store an answer when the stream was lost while it was in flight (even if live again before it arrives)', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey();
    const release = standIn.hold();
    const pending = verifier.verify(k.secret);
    await until('the request', () => standIn.state.verifyCalls === 1);
    standIn.dropStreams();
    await until('the loss', () => !verifier.stats().live);
    await until('live again', () => verifier.stats().live);
    release();
    await pending;
    expect(verifier.stats().size).toBe(0);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(2);
  });

  it('stores nothing during the first settleMs after the stream goes live', async () => {
    const { standIn, verifier } = await setup();
    const k = standIn.addKey();
    await until('live', () => verifier.stats().live);
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(2);
    expect(await verifier.ready()).toBe(true);
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(3);
  });
});

describe('createVerifier: single flight', () => {
  it('concurrent verify calls of one key (and one client address) share one request; each gets its own verdict', async () => {
    const { standIn, verifier } = await setup({ cache: false });
    const k = standIn.addKey({ permissions: ['orders.read'] });
    const release = standIn.hold();
    const calls = [
      verifier.verify(k.secret, { requiredPermissions: ['orders.read'], clientIp: '203.0.113.7' }),
      verifier.verify(k.secret, { requiredPermissions: ['orders.read'], clientIp: '203.0.113.7' }),
      verifier.verify(k.secret, { requiredPermissions: ['orders.write'], clientIp: '203.0.113.7' }),
      verifier.verify(k.secret, { clientIp: '203.0.113.7' }),
    ];
    const other = verifier.verify(k.secret, { clientIp: '198.51.100.1' });
    await until('the requests', () => standIn.state.verifyCalls === 2);
    await sleep(30);
    release();
    const [r1, r2, r3, r4] = await Promise.all(calls);
    expect(r1).toMatchObject({ code: 'VALID' });
    expect(r2).toMatchObject({ code: 'VALID' });
    expect(r2).not.toBe(r1);
    expect(r3).toMatchObject({ valid: false, code: 'INSUFFICIENT_PERMISSIONS', missingPermissions: ['orders.write'] });
    expect(r4).toMatchObject({ code: 'VALID' });
    expect(await other).toMatchObject({ code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(2);
  });

  it('keeps an answer no longer than keyward\'s own cache age (maxAgeMs of the connected reset)', async () => {
    const { standIn, verifier } = await live({}, { maxAgeMs: 300 });
    const k = standIn.addKey();
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(1); // cached
    await sleep(350);
    await verifier.verify(k.secret);
    expect(standIn.state.verifyCalls).toBe(2); // aged out: asked again
  });

  it('a call made after an invalidate does not share an answer asked for before it', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey();
    const release = standIn.hold();
    const first = verifier.verify(k.secret);
    await until('the first request', () => standIn.state.verifyCalls === 1);
    standIn.invalidate([k.keyId]);
    await sleep(50); // the invalidate has arrived
    const second = verifier.verify(k.secret);
    await until('a request of its own', () => standIn.state.verifyCalls === 2);
    release();
    await Promise.all([first, second]);
    expect(standIn.state.verifyCalls).toBe(2);
  });

  it('a failure is shared too, and the next call asks again', async () => {
    const { standIn, verifier } = await setup({ cache: false });
    const k = standIn.addKey();
    standIn.state.verifyStatus = 503;
    const release = standIn.hold();
    const calls = [verifier.verify(k.secret), verifier.verify(k.secret)].map((p) => p.catch((e: unknown) => e));
    await until('the request', () => standIn.state.verifyCalls === 1);
    release();
    for (const r of await Promise.all(calls)) expect(r).toBeInstanceOf(KeywardUnavailableError);
    standIn.state.verifyStatus = 200;
    expect(await verifier.verify(k.secret)).toMatchObject({ code: 'VALID' });
    expect(standIn.state.verifyCalls).toBe(2);
  });
});

describe('createVerifier: keyward unavailable', () => {
  it('rejects with KeywardUnavailableError on a 5xx, a 429, a timeout and a refused connection, never naming the presented key', async () => {
    const { standIn, verifier } = await setup({ cache: false, timeoutMs: 200 });
    const k = standIn.addKey();
    for (const status of [503, 500, 429]) {
      standIn.state.verifyStatus = status;
      const err = await verifier.verify(k.secret).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeywardUnavailableError);
      expect(err).toMatchObject({ status, retryAfterSeconds: 3 });
      await expectKeyNowhere(err, k.secret);
    }
    standIn.state.verifyStatus = 200;
    standIn.state.hang = true;
    const started = Date.now();
    const timedOut = await verifier.verify(k.secret).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(KeywardUnavailableError);
    expect((timedOut as Error).message).toMatch(/no answer within 200 ms/);
    expect(Date.now() - started).toBeLessThan(1_500);
    await expectKeyNowhere(timedOut, k.secret);

    await standIn.stop();
    const refused = await verifier.verify(k.secret).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(KeywardUnavailableError);
    expect((refused as Error).message).toMatch(/could not be reached/);
    await expectKeyNowhere(refused, k.secret, standIn.consumerKey);
  });

  it('rejects with KeywardUnavailableError once the stream is lost and keyward is down, even for a key that was cached', async () => {
    const { standIn, verifier } = await live();
    const k = standIn.addKey();
    await verifier.verify(k.secret);
    await verifier.verify(k.secret);
    expect(verifier.stats().hits).toBe(1);
    await standIn.stop();
    await until('the loss', () => !verifier.stats().live);
    const err = await verifier.verify(k.secret).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeywardUnavailableError);
    await expectKeyNowhere(err, k.secret);
  });

  it("rejects with KeywardRequestError when keyward refuses this service's own key, and scrubs a presented key from keyward's words", async () => {
    const standIn = await startStandIn();
    cleanups.push(() => standIn.stop());
    const verifier = createVerifier({ url: standIn.url, apiKey: newKey(), cache: false });
    const k = standIn.addKey();
    const err = await verifier.verify(k.secret).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeywardRequestError);
    expect(err).toMatchObject({ status: 401, code: 'API_KEY_INVALID' });
    const right = createVerifier({ url: standIn.url, apiKey: standIn.consumerKey, cache: false });
    standIn.state.echoKeyIn401 = true;
    const echoed = await right.verify(k.secret).catch((e: unknown) => e);
    expect(echoed).toBeInstanceOf(KeywardRequestError);
    expect((echoed as Error).message).toContain('[redacted]');
    await expectKeyNowhere(echoed, k.secret);
  });
});

describe('createVerifier: close', () => {
  it('ends the stream; a process that closed its verifier exits by itself', async () => {
    const { standIn, verifier } = await live();
    expect(standIn.streams.size).toBe(1);
    verifier.close();
    expect(verifier.stats().live).toBe(false);
    await until('the stream to close', () => standIn.streams.size === 0);

    const k = standIn.addKey();
    const code = `
      import { createVerifier } from '@keyward/verify';
      const v = createVerifier({ url: process.env.URL, apiKey: process.env.API_KEY });
      if (!(await v.ready(5000))) { console.log('not ready'); process.exit(3); }
      const r = await v.verify(process.env.KEY);
      await v.verify(process.env.KEY);
      console.log(JSON.stringify({ code: r.code, hits: v.stats().hits }));
      v.close();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, URL: standIn.url, API_KEY: standIn.consumerKey, KEY: k.secret },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const started = Date.now();
    const exit = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(exit, out).toBe(0);
    expect(JSON.parse(out.trim())).toEqual({ code: 'VALID', hits: 1 });
    // ready() waits out settleMs (1 s); the exit itself must follow close() promptly.
    expect(Date.now() - started).toBeLessThan(8_000);
  });
});

// ---- the fastify plugin and the middleware -----------------------------------------------------

async function fastifyApp(verifier: Verifier, logs?: string[]) {
  const app = Fastify({
    logger: logs ? { level: 'info', stream: new Writable({ write: (c, _e, cb) => (logs.push(String(c)), cb()) }) } : false,
  });
  await app.register(keywardFastify, { verifier });
  app.get('/orders', { config: { keyward: { requiredPermissions: ['orders.read'] } } }, async (req) => ({ keyward: req.keyward }));
  app.post('/orders', { config: { keyward: { requiredPermissions: ['orders.write'] } } }, async (req) => ({ keyId: req.keyward?.keyId }));
  app.get('/any-key', { config: { keyward: {} } }, async (req) => ({ keyId: req.keyward?.keyId }));
  app.get('/open', async (req) => ({ open: true, keyward: req.keyward }));
  cleanups.push(() => app.close());
  return app;
}

/** The refusals the plugin and the middleware must give, as [headers, status, code]. */
function refusalCases(s: StandIn) {
  const good = s.addKey({ permissions: ['orders.read'], name: 'reader' });
  const disabled = s.addKey({ enabled: false });
  const expired = s.addKey({ expiresAt: new Date(Date.now() - 1000).toISOString() });
  const limited = s.addKey({ rateLimited: true });
  // Both the plugin and the middleware see the client as 127.0.0.1.
  const fenced = s.addKey({ permissions: ['orders.read'], allowedCidrs: ['10.0.0.0/8'] });
  const cases: Array<[string, Record<string, string>, number, string]> = [
    ['no key', {}, 401, 'UNAUTHENTICATED'],
    ['a blank X-API-Key', { 'x-api-key': '  ' }, 401, 'UNAUTHENTICATED'],
    ['Basic authorization alone', { authorization: 'Basic dXNlcjpwYXNz' }, 401, 'UNAUTHENTICATED'],
    ['an unknown key', { 'x-api-key': newKey() }, 401, 'API_KEY_INVALID'],
    ['a malformed key', { 'x-api-key': 'hello' }, 401, 'API_KEY_INVALID'],
    ['two different keys', { 'x-api-key': good.secret, authorization: `Bearer ${newKey()}` }, 401, 'API_KEY_INVALID'],
    ['a disabled key', { 'x-api-key': disabled.secret }, 401, 'API_KEY_DISABLED'],
    ['an expired key', { authorization: `Bearer ${expired.secret}` }, 401, 'API_KEY_EXPIRED'],
    ['a rate-limited key', { 'x-api-key': limited.secret }, 429, 'RATE_LIMITED'],
    ['a key used from outside its allowlist', { 'x-api-key': fenced.secret }, 403, 'IP_NOT_ALLOWED'],
  ];
  return { good, cases, secrets: [good.secret, disabled.secret, expired.secret, limited.secret, fenced.secret] };
}

describe('keywardFastify', () => {
  it('refuses with problem+json: 401 without a key or with a bad one, 403 naming the missing permission, 429 with Retry-After', async () => {
    const { standIn, verifier } = await setup();
    const logs: string[] = [];
    const app = await fastifyApp(verifier, logs);
    const { good, cases, secrets } = refusalCases(standIn);
    for (const [what, headers, status, code] of cases) {
      const res = await app.inject({ method: 'GET', url: '/orders', headers });
      expect(res.statusCode, what).toBe(status);
      expect(res.headers['content-type'], what).toBe('application/problem+json; charset=utf-8');
      const body = res.json();
      expect(Object.keys(body).sort(), what).toEqual(['code', 'detail', 'status', 'title', 'type']);
      expect(body, what).toMatchObject({ type: 'about:blank', status, code });
      if (status === 401) expect(res.headers['www-authenticate'], what).toMatch(/^ApiKey/);
      else expect(res.headers['www-authenticate'], what).toBeUndefined();
      if (status === 429) expect(res.headers['retry-after'], what).toBe('7');
      if (code === 'IP_NOT_ALLOWED') expect(body, what).toMatchObject({ title: 'Forbidden', detail: 'The API key may not be used from this address.' });
      for (const s of secrets) expect(res.body, what).not.toContain(s);
    }
    const forbidden = await app.inject({ method: 'POST', url: '/orders', headers: { 'x-api-key': good.secret }, payload: {} });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toMatchObject({ type: 'about:blank', title: 'Forbidden', status: 403, code: 'FORBIDDEN' });
    expect(forbidden.json().detail).toContain('orders.write');
    expect(logs.join('')).not.toContain(good.secret);
  });

  it('lets a valid key through (X-API-Key trimmed, or Bearer, or both when equal), sets request.keyward and passes the client address', async () => {
    const { standIn, verifier } = await setup();
    const app = await fastifyApp(verifier);
    const k = standIn.addKey({ permissions: ['orders.*'], name: 'orders-client', metadata: { tier: 'gold' } });
    for (const headers of [{ 'x-api-key': `  ${k.secret} ` }, { authorization: `Bearer ${k.secret}` }, { 'x-api-key': k.secret, authorization: `bearer ${k.secret}` }]) {
      const res = await app.inject({ method: 'GET', url: '/orders', headers, remoteAddress: '203.0.113.9' });
      expect(res.statusCode, JSON.stringify(headers)).toBe(200);
      expect(res.json().keyward).toMatchObject({ valid: true, code: 'VALID', keyId: k.keyId, name: 'orders-client', permissions: ['orders.*'], metadata: { tier: 'gold' } });
    }
    expect(standIn.state.verifyBodies.at(-1)).toMatchObject({ key: k.secret, requiredPermissions: ['orders.read'], clientIp: '203.0.113.9' });
    const post = await app.inject({ method: 'POST', url: '/orders', headers: { 'x-api-key': k.secret }, payload: { item: 'x' } });
    expect(post.json()).toEqual({ keyId: k.keyId });
    expect((await app.inject({ url: '/any-key', headers: { 'x-api-key': k.secret } })).json()).toEqual({ keyId: k.keyId });
    expect((await app.inject({ url: '/any-key' })).statusCode).toBe(401);
    // A route without config.keyward is not checked (and keyward is not asked).
    const calls = standIn.state.verifyCalls;
    const open = await app.inject({ url: '/open', headers: { 'x-api-key': 'whatever' } });
    expect(open.statusCode).toBe(200);
    expect(open.json()).toEqual({ open: true, keyward: null });
    expect(standIn.state.verifyCalls).toBe(calls);
  });

  it('answers 503 KEYWARD_UNAVAILABLE with Retry-After: 1 when keyward cannot be reached and nothing is cached', async () => {
    const { standIn, verifier } = await setup({ timeoutMs: 300 });
    const logs: string[] = [];
    const app = await fastifyApp(verifier, logs);
    const k = standIn.addKey();
    standIn.state.verifyStatus = 503;
    const res = await app.inject({ url: '/orders', headers: { 'x-api-key': k.secret } });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()).toMatchObject({ type: 'about:blank', title: 'Service Unavailable', status: 503, code: 'KEYWARD_UNAVAILABLE' });
    await standIn.stop();
    const down = await app.inject({ url: '/orders', headers: { authorization: `Bearer ${k.secret}` } });
    expect(down.statusCode).toBe(503);
    expect(down.json().code).toBe('KEYWARD_UNAVAILABLE');
    expect(logs.join('')).toContain('keyward unavailable');
    expect(logs.join('') + res.body + down.body).not.toContain(k.secret);
  });

  it('judges a cached key with an allowlist by request.ip (trustProxy applied): 200 inside, 403 IP_NOT_ALLOWED outside, keyward asked once', async () => {
    const { standIn, verifier } = await live();
    const app = Fastify({ trustProxy: true });
    await app.register(keywardFastify, { verifier });
    app.get('/orders', { config: { keyward: { requiredPermissions: ['orders.read'] } } }, async (req) => ({ keyId: req.keyward?.keyId, code: req.keyward?.code }));
    cleanups.push(() => app.close());
    const k = standIn.addKey({ permissions: ['orders.read'], allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'] });
    const from = (ip: string) => app.inject({ url: '/orders', headers: { 'x-api-key': k.secret, 'x-forwarded-for': ip } });
    // First from outside: keyward refuses, and the answer is kept as an active key.
    const refused = await from('192.0.2.1');
    expect(refused.statusCode).toBe(403);
    expect(refused.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(refused.json()).toEqual({ type: 'about:blank', title: 'Forbidden', status: 403, detail: 'The API key may not be used from this address.', code: 'IP_NOT_ALLOWED' });
    expect(standIn.state.verifyBodies.at(-1)).toMatchObject({ key: k.secret, clientIp: '192.0.2.1' });
    for (const ip of ['10.1.2.3', '::ffff:10.4.5.6', '2001:db8::1']) {
      const ok = await from(ip);
      expect(ok.statusCode, ip).toBe(200);
      expect(ok.json(), ip).toEqual({ keyId: k.keyId, code: 'VALID' });
    }
    for (const ip of ['192.0.2.1', '172.16.0.1', '::ffff:192.0.2.1', '2001:db9::1']) {
      const no = await from(ip);
      expect(no.statusCode, ip).toBe(403);
      expect(no.json().code, ip).toBe('IP_NOT_ALLOWED');
      expect(no.headers['www-authenticate'], ip).toBeUndefined();
    }
    expect(standIn.state.verifyCalls).toBe(1);
    expect(verifier.stats().hits).toBe(7);
  });

  it('refuses a repeated key header and a malformed route config', async () => {
    const { standIn, verifier } = await setup({ cache: false });
    const app = await fastifyApp(verifier);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const k = standIn.addKey();
    const { port } = app.server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/orders`, { headers: [['x-api-key', k.secret], ['X-API-Key', k.secret]] });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('API_KEY_INVALID');
    const ok = await fetch(`http://127.0.0.1:${port}/orders`, { headers: { 'x-api-key': k.secret } });
    expect(ok.status).toBe(200);

    const bad = Fastify();
    await bad.register(keywardFastify, { verifier });
    expect(() => bad.get('/x', { config: { keyward: { requiredPermissions: 'orders.read' as unknown as string[] } } }, async () => 'x')).toThrow(/config.keyward/);
    expect(() => bad.get('/y', { config: { keyward: { requiredPermissions: ['orders'] } } }, async () => 'y')).toThrow(/not a permission name/);
    await bad.close();
  });
});

describe('keywardMiddleware (node:http)', () => {
  /** `ipHeader`: the server sets req.ip from that request header first, as Express does from X-Forwarded-For. */
  async function httpApp(verifier: Verifier, requiredPermissions: string[], ipHeader?: string) {
    const mw = keywardMiddleware(verifier, { requiredPermissions });
    const server = createServer((req, res) => {
      const ip = ipHeader ? req.headers[ipHeader] : undefined;
      if (typeof ip === 'string') (req as KeywardRequest).ip = ip;
      mw(req, res, (err?: unknown) => {
        if (err) {
          res.statusCode = 500;
          return res.end('error');
        }
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keyward: (req as KeywardRequest).keyward }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('gives the same refusals as the plugin, sets req.keyward on success, and 503 when keyward is down', async () => {
    const { standIn, verifier } = await setup();
    const base = await httpApp(verifier, ['orders.read']);
    const { good, cases, secrets } = refusalCases(standIn);
    for (const [what, headers, status, code] of cases) {
      const res = await fetch(base, { headers });
      expect(res.status, what).toBe(status);
      expect(res.headers.get('content-type'), what).toBe('application/problem+json; charset=utf-8');
      const text = await res.text();
      expect(JSON.parse(text), what).toMatchObject({ type: 'about:blank', status, code });
      if (status === 401) expect(res.headers.get('www-authenticate'), what).toMatch(/^ApiKey/);
      else expect(res.headers.get('www-authenticate'), what).toBeNull();
      if (status === 429) expect(res.headers.get('retry-after'), what).toBe('7');
      for (const s of secrets) expect(text, what).not.toContain(s);
    }
    const ok = await fetch(base, { headers: { authorization: `Bearer ${good.secret}` } });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { keyward: VerifyResult }).keyward).toMatchObject({ valid: true, keyId: good.keyId, name: 'reader' });
    expect(standIn.state.verifyBodies.at(-1)).toMatchObject({ key: good.secret, requiredPermissions: ['orders.read'], clientIp: '127.0.0.1' });

    const writer = await httpApp(verifier, ['orders.write']);
    const forbidden = await fetch(writer, { headers: { 'x-api-key': good.secret } });
    expect(forbidden.status).toBe(403);
    expect(((await forbidden.json()) as { detail: string }).detail).toContain('orders.write');

    standIn.state.verifyStatus = 503;
    const other = standIn.addKey();
    const down = await fetch(base, { headers: { 'x-api-key': other.secret } });
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBe('1');
    expect(((await down.json()) as { code: string }).code).toBe('KEYWARD_UNAVAILABLE');
  });

  it('judges a cached key with an allowlist by req.ip, else the socket address: 200 inside, 403 IP_NOT_ALLOWED outside, keyward asked once', async () => {
    const { standIn, verifier } = await live();
    const base = await httpApp(verifier, ['orders.read'], 'x-test-ip');
    const k = standIn.addKey({ permissions: ['orders.read'], allowedCidrs: ['10.0.0.0/8'] });
    const first = await fetch(base, { headers: { 'x-api-key': k.secret, 'x-test-ip': '10.1.2.3' } });
    expect(first.status).toBe(200);
    expect(((await first.json()) as { keyward: VerifyResult }).keyward).toMatchObject({ valid: true, keyId: k.keyId, allowedCidrs: ['10.0.0.0/8'] });
    expect(standIn.state.verifyBodies.at(-1)).toMatchObject({ key: k.secret, clientIp: '10.1.2.3' });
    const inside = await fetch(base, { headers: { 'x-api-key': k.secret, 'x-test-ip': '::ffff:10.7.7.7' } });
    expect(inside.status).toBe(200);
    for (const headers of [{ 'x-test-ip': '192.0.2.1' }, {} /* the socket's 127.0.0.1 */] as Array<Record<string, string>>) {
      const res = await fetch(base, { headers: { 'x-api-key': k.secret, ...headers } });
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
      expect(await res.json()).toEqual({ type: 'about:blank', title: 'Forbidden', status: 403, detail: 'The API key may not be used from this address.', code: 'IP_NOT_ALLOWED' });
    }
    expect(standIn.state.verifyCalls).toBe(1);
  });
});

describe('examples/orders-api', () => {
  it('serves GET /orders (orders.read), POST /orders (orders.write), GET /orders-open and GET /health, and stops on SIGTERM', async () => {
    const standIn = await startStandIn();
    cleanups.push(() => standIn.stop());
    const reader = standIn.addKey({ permissions: ['orders.read'], name: 'reader' });
    const writer = standIn.addKey({ permissions: ['orders.*'], name: 'writer' });
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/orders-api/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, KEYWARD_URL: standIn.url, KEYWARD_API_KEY: standIn.consumerKey, PORT: '0', HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    cleanups.push(() => child.kill('SIGKILL'));
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    await until('listening', () => /listening on http:\/\/127\.0\.0\.1:\d+\n/.test(out) || child.exitCode !== null, 20_000);
    expect(out, err).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+\n$/);
    const base = out.trim().replace('listening on ', '');
    expect(await (await fetch(`${base}/health`)).json()).toMatchObject({ status: 'ok' });
    expect((await fetch(`${base}/orders`)).status).toBe(401);
    expect((await fetch(`${base}/orders-open`)).status).toBe(200);
    const created = await fetch(`${base}/orders`, { method: 'POST', headers: { 'x-api-key': writer.secret, 'content-type': 'application/json' }, body: JSON.stringify({ item: 'widget', quantity: 2 }) });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ id: 1, item: 'widget', quantity: 2, createdBy: writer.keyId });
    const denied = await fetch(`${base}/orders`, { method: 'POST', headers: { authorization: `Bearer ${reader.secret}`, 'content-type': 'application/json' }, body: '{"item":"x"}' });
    expect(denied.status).toBe(403);
    const listed = await fetch(`${base}/orders`, { headers: { 'x-api-key': reader.secret } });
    expect(listed.status).toBe(200);
    expect(await listed.json()).toMatchObject({ orders: [{ item: 'widget' }], caller: { keyId: reader.keyId, name: 'reader' } });
    expect(await (await fetch(`${base}/orders-open`)).json()).toMatchObject({ orders: [{ item: 'widget' }], caller: null });
    await until('the stream', () => standIn.streams.size === 1);
    child.kill('SIGTERM');
    expect(await exited, err).toBe(0);
    await until('the stream to close', () => standIn.streams.size === 0);
    expect(out + err).not.toContain(reader.secret);
    expect(out + err).not.toContain(standIn.consumerKey);
  });
});
