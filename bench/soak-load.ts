// The soak's load generator (started by bench/soak.ts in its own process): an open loop at
// SOAK_RPS for SOAK_SECONDS, mixing the lifecycle, listing and authentication with good and bad
// keys. Prints one JSON report on stdout.
import { randomBytes, randomUUID } from 'node:crypto';
import { generateKey } from '../src/auth/key-format.js';

const BASE = process.env.SOAK_BASE!;
const ADMIN = process.env.SOAK_KEY!;
const SECONDS = Number(process.env.SOAK_SECONDS ?? 120);
const RPS = Number(process.env.SOAK_RPS ?? 50);

type Key = { id: string; key: string };
const live: Key[] = [];
const byStatus: Record<string, number> = {};
const times: Record<string, number[]> = {};
let errors = 0;
let overloaded = 0;
let sent = 0;

const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)];
const json = { 'content-type': 'application/json' };

async function call(route: string, method: string, url: string, key: string, body?: object) {
  sent++;
  const started = performance.now();
  try {
    const res = await fetch(`${BASE}${url}`, {
      method,
      headers: { 'x-api-key': key, ...(body ? json : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    (times[route] ??= []).push(performance.now() - started);
    byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
    if (res.status === 503 && text.includes('"OVERLOADED"')) overloaded++;
    return { status: res.status, body: text };
  } catch {
    errors++;
    return { status: 0, body: '' };
  }
}

async function create() {
  const r = await call('POST /apikeys', 'POST', '/api/v1/apikeys', ADMIN, { name: `soak-${randomUUID()}`, roleIds: [3], changeReason: 'soak' });
  if (r.status === 201) {
    const k = JSON.parse(r.body) as Key;
    live.push({ id: k.id, key: k.key });
  }
}

/** One request of the mix (weights out of 100). */
async function one() {
  const roll = Math.random() * 100;
  const k = live.length ? pick(live) : undefined;
  if (roll < 6 || !k) return create();
  if (roll < 14) return call('GET /apikeys?name&limit', 'GET', '/api/v1/apikeys?name=soak-*&limit=100', ADMIN);
  if (roll < 26) return call('GET /apikeys/{id}', 'GET', `/api/v1/apikeys/${k.id}`, ADMIN);
  if (roll < 34) return call('PATCH /apikeys/{id}', 'PATCH', `/api/v1/apikeys/${k.id}`, ADMIN, { description: randomBytes(8).toString('hex') });
  if (roll < 37 && live.length > 20) {
    live.splice(live.indexOf(k), 1);
    return call('DELETE /apikeys/{id}', 'DELETE', `/api/v1/apikeys/${k.id}`, ADMIN);
  }
  if (roll < 85) return call('GET /userinfo (good key)', 'GET', '/api/v1/userinfo', k.key);
  if (roll < 90) return call('GET /userinfo (unknown key)', 'GET', '/api/v1/userinfo', generateKey());
  if (roll < 95) return call('GET /userinfo (wrong secret)', 'GET', '/api/v1/userinfo', `${k.key.slice(0, 16)}${randomBytes(24).toString('hex')}`);
  return call('GET /health', 'GET', '/api/v1/health', '');
}

async function main() {
  for (let i = 0; i < 20; i++) await create();
  const inFlight = new Set<Promise<unknown>>();
  const started = performance.now();
  let due = 0;
  // Open loop: requests are started on schedule whether or not earlier ones have finished.
  while (performance.now() - started < SECONDS * 1000) {
    const shouldHaveSent = Math.floor(((performance.now() - started) / 1000) * RPS);
    for (; due < shouldHaveSent; due++) {
      const p = one().finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(inFlight);
  const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
  const routes = Object.fromEntries(
    Object.entries(times)
      .sort()
      .map(([route, xs]) => [route, { n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) }]),
  );
  // Timing, on an idle server: can a caller tell an unknown prefix from a real one? Sequential,
  // alternating, a fresh wrong secret each time (a repeated one would be answered from the
  // negative cache).
  const unknown: number[] = [];
  const wrong: number[] = [];
  const real = live[0].key;
  for (let i = 0; i < 100; i++) {
    for (const [list, key] of [
      [unknown, generateKey()],
      [wrong, `${real.slice(0, 16)}${randomBytes(24).toString('hex')}`],
    ] as const) {
      const t = performance.now();
      await fetch(`${BASE}/api/v1/userinfo`, { headers: { 'x-api-key': key } }).then((r) => r.arrayBuffer());
      list.push(performance.now() - t);
    }
  }
  const timing = {
    unknownPrefix: { p50: pct(unknown, 50), p99: pct(unknown, 99) },
    wrongSecretRealPrefix: { p50: pct(wrong, 50), p99: pct(wrong, 99) },
  };
  process.stdout.write(JSON.stringify({ sent, errors, overloaded, byStatus, routes, timing }));
}

main().catch((err) => {
  process.stderr.write(`soak-load: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
