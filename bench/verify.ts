// npm run bench, section 7: service-to-service verification.
//   a. the verify endpoint for a cached presented key, against keyward's own baseline routes;
//   b. a consumer (examples/orders-api with @keyward/verify): its protected route against the
//      same route unprotected, and the CPU the check adds per request;
//   c. revocation reaching the consumer: a disable through keyward, until the example refuses,
//      through the instance the example listens to and through another one (LISTEN/NOTIFY).
import { autocannon, cpuUsOf, startExample, startServer, type LoadResult } from './support.js';

type Api = (base: string, key: string, method: string, url: string, body?: object) => Promise<{ status: number; json: any }>;

export interface VerifyBenchContext {
  base: string;
  infra: string;
  env: Record<string, string | undefined>;
  api: Api;
  report: (name: string, value: number | string) => void;
  rounds: number;
  seconds: number;
  connections: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
const round = (x: number, d = 2) => Number(x.toFixed(d));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchVerify(ctx: VerifyBenchContext) {
  const { base, infra, api, report } = ctx;
  const role = await api(base, infra, 'POST', '/api/v1/roles', { name: 'bench-orders', permissions: ['orders.read', 'orders.write'] });
  const gateway = (await api(base, infra, 'POST', '/api/v1/apikeys', { name: 'bench-gateway', roleIds: [5] })).json;
  const client = (await api(base, infra, 'POST', '/api/v1/apikeys', { name: 'bench-client', roleIds: [role.json.id] })).json;
  const load = (url: string, extra: { headers?: string[]; method?: string; body?: string } = {}) =>
    autocannon(url, { seconds: ctx.seconds, connections: ctx.connections, ...extra });
  const ok = (r: LoadResult, what: string) => {
    if (r.non2xx) throw new Error(`${what}: ${r.non2xx} non-2xx replies`);
    return r;
  };

  // a. The verify endpoint, cached presented key, against GET /bench/open and GET /bench/authed.
  const body = JSON.stringify({ key: client.key, requiredPermissions: ['orders.read'], clientIp: '203.0.113.7' });
  const verifyReq = { method: 'POST', body, headers: [`x-api-key=${gateway.key}`, 'content-type=application/json'] };
  if ((await api(base, gateway.key, 'POST', '/api/v1/apikeys/verify', JSON.parse(body))).json.code !== 'VALID') throw new Error('verify did not say VALID');
  const open: number[] = [];
  const echo: number[] = [];
  const verified: number[] = [];
  for (let i = 0; i < ctx.rounds; i++) {
    open.push(ok(await load(`${base}/bench/open`), 'open').rps);
    echo.push(ok(await load(`${base}/bench/echo`, { method: 'POST', body, headers: ['content-type=application/json'] }), 'echo').rps);
    verified.push(ok(await load(`${base}/api/v1/apikeys/verify`, verifyReq), 'verify').rps);
  }
  report('7a_verify_endpoint_rps_median', Math.round(median(verified)));
  report('7a_post_baseline_rps_median', Math.round(median(echo)));
  report('7a_verify_over_post_baseline_rps_ratio_median', round(median(verified.map((v, i) => v / echo[i]))));
  report('7a_verify_over_post_baseline_rps_ratio_best', round(Math.max(...verified) / Math.max(...echo)));
  report('7a_verify_over_get_open_rps_ratio_median', round(median(verified.map((v, i) => v / open[i]))));

  // b. The consumer: GET /orders (checked, from its cache) against GET /orders-open (the same handler, unchecked).
  const example = await startExample(base, gateway.key);
  const pid = example.child.pid!;
  const orders = (key: string) => fetch(`${example.base}/orders`, { headers: { 'x-api-key': key } }).then(async (r) => (await r.arrayBuffer(), r.status));
  const live = async () => ((await (await fetch(`${example.base}/health`)).json()) as { keyward: { live: boolean } }).keyward.live;
  for (let i = 0; i < 200 && !(await live()); i++) await sleep(50);
  await sleep(1_200); // answers are cached only once the stream has settled
  if ((await orders(client.key)) !== 200) throw new Error('the example refused the bench key');
  const measure = async (url: string, headers: string[]) => {
    const before = cpuUsOf(pid);
    const r = ok(await load(url, { headers }), url);
    return { rps: r.rps, cpuUs: (cpuUsOf(pid) - before) / r.total };
  };
  const plain: Array<{ rps: number; cpuUs: number }> = [];
  const guarded: typeof plain = [];
  for (let i = 0; i < ctx.rounds; i++) {
    plain.push(await measure(`${example.base}/orders-open`, []));
    guarded.push(await measure(`${example.base}/orders`, [`x-api-key=${client.key}`]));
  }
  report('7b_consumer_open_rps_median', Math.round(median(plain.map((r) => r.rps))));
  report('7b_consumer_protected_rps_median', Math.round(median(guarded.map((r) => r.rps))));
  report('7b_consumer_protected_over_open_rps_ratio_median', round(median(guarded.map((r, i) => r.rps / plain[i].rps))));
  report('7b_consumer_protected_over_open_rps_ratio_best', round(Math.max(...guarded.map((r) => r.rps)) / Math.max(...plain.map((r) => r.rps))));
  report('7b_consumer_cpu_us_added_per_request_best', round(Math.min(...guarded.map((r) => r.cpuUs)) - Math.min(...plain.map((r) => r.cpuUs)), 2));
  report('7b_consumer_cpu_us_added_per_request_median', round(median(guarded.map((r) => r.cpuUs)) - median(plain.map((r) => r.cpuUs)), 2));

  // c. Revocation reaching the consumer: 200 keys cached in the example, each disabled once.
  const other = await startServer(ctx.env);
  const trialKeys: Array<{ id: string; key: string }> = [];
  for (let i = 0; i < 400; i++) trialKeys.push((await api(base, infra, 'POST', '/api/v1/apikeys', { name: `revoked-${i}`, roleIds: [role.json.id] })).json);
  for (const k of trialKeys) await orders(k.key);
  await sleep(1_200);
  for (const k of trialKeys) if ((await orders(k.key)) !== 200) throw new Error('a trial key was refused before its disable');
  for (const [name, through, keys] of [
    ['7c_same_instance', base, trialKeys.slice(0, 200)],
    ['7c_other_instance', other.base, trialKeys.slice(200)],
  ] as const) {
    const sinceSent: number[] = [];
    const sinceReply: number[] = [];
    let stale = 0;
    let probes = 0;
    for (const k of keys) {
      // Requests with the key keep flowing through the example across the change; one that
      // started after keyward's reply and still succeeded is a stale success.
      let replied = Number.POSITIVE_INFINITY;
      let refusedAt = Number.POSITIVE_INFINITY;
      let running = true;
      const pollers = Array.from({ length: 4 }, async () => {
        while (running) {
          const started = performance.now();
          const status = await orders(k.key);
          if (started > replied) {
            probes++;
            if (status === 200) stale++;
          }
          if (status !== 200) {
            refusedAt = Math.min(refusedAt, performance.now());
            running = false;
          }
        }
      });
      await sleep(2);
      const sent = performance.now();
      const off = await api(through, infra, 'PATCH', `/api/v1/apikeys/${k.id}`, { isEnabled: false });
      replied = performance.now();
      if (off.status !== 200) throw new Error(`disable failed: ${off.status}`);
      const deadline = setTimeout(() => (running = false), 5_000);
      await Promise.all(pollers);
      clearTimeout(deadline);
      if (!Number.isFinite(refusedAt)) throw new Error('the example never refused a disabled key');
      sinceSent.push(refusedAt - sent);
      sinceReply.push(Math.max(0, refusedAt - replied));
    }
    report(`${name}_revocation_to_consumer_p50_ms`, round(pct(sinceSent, 50)));
    report(`${name}_revocation_to_consumer_p99_ms`, round(pct(sinceSent, 99)));
    report(`${name}_refusal_after_reply_p99_ms`, round(pct(sinceReply, 99)));
    report(`${name}_stale_successes_after_reply`, `${stale} of ${probes} requests`);
  }
}
