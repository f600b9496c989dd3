// npm run bench, section 9: webhooks.
//   a. what the outbox adds to a key change: PATCH latency with no subscription (nothing is
//      written) against one subscription that wants apikey.updated (an event and a delivery row
//      in the change's transaction), in alternating blocks;
//   b. commit to arrival: a change's reply until a loopback receiver has its event, one at a time;
//   c. throughput: a burst of changes over ten keys until every event has arrived.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { startServer } from './support.js';

type Api = (base: string, key: string, method: string, url: string, body?: object) => Promise<{ status: number; json: any }>;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
const round = (x: number, d = 2) => Number(x.toFixed(d));

export async function benchWebhooks(ctx: { env: Record<string, string | undefined>; infra: string; api: Api; report: (name: string, value: number | string) => void }) {
  const { api, report, infra } = ctx;
  const arrivals = new Map<string, number>(); // key description → when its event arrived
  const receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const event = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (event.type === 'apikey.updated') arrivals.set(event.data.key.description, performance.now());
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const s = await startServer({ ...ctx.env, WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'), WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32' });
  try {
    const key = (await api(s.base, infra, 'POST', '/api/v1/apikeys', { name: 'bench-webhooked' })).json;
    let n = 0;
    const patch = async () => {
      const t = performance.now();
      const res = await api(s.base, infra, 'PATCH', `/api/v1/apikeys/${key.id}`, { description: `d-${++n}` });
      if (res.status !== 200) throw new Error(`PATCH ${res.status}`);
      return { ms: performance.now() - t, description: `d-${n}`, at: performance.now() };
    };
    // a. Alternating blocks of 50, six each.
    const without: number[] = [];
    const withHook: number[] = [];
    let hookId: string | null = null;
    for (let block = 0; block < 12; block++) {
      const subscribed = block % 2 === 1;
      if (subscribed && !hookId) hookId = (await api(s.base, infra, 'POST', '/api/v1/webhooks', { url: hookUrl, eventTypes: ['apikey.updated'] })).json.id;
      if (!subscribed && hookId) {
        await api(s.base, infra, 'DELETE', `/api/v1/webhooks/${hookId}`);
        hookId = null;
      }
      for (let i = 0; i < 50; i++) (subscribed ? withHook : without).push((await patch()).ms);
    }
    report('9_key_change_p50_ms_no_subscription', round(pct(without, 50)));
    report('9_key_change_p50_ms_one_subscription', round(pct(withHook, 50)));
    report('9_key_change_p99_ms_no_subscription', round(pct(without, 99)));
    report('9_key_change_p99_ms_one_subscription', round(pct(withHook, 99)));

    // b. One change at a time: reply to arrival.
    hookId = (await api(s.base, infra, 'POST', '/api/v1/webhooks', { url: hookUrl, eventTypes: ['apikey.updated'] })).json.id;
    const lags: number[] = [];
    for (let i = 0; i < 100; i++) {
      const p = await patch();
      while (!arrivals.has(p.description)) await new Promise((r) => setTimeout(r, 1));
      lags.push(arrivals.get(p.description)! - p.at);
    }
    report('9_reply_to_arrival_p50_ms', round(pct(lags, 50)));
    report('9_reply_to_arrival_p99_ms', round(pct(lags, 99)));

    // c. 500 changes over 10 keys, one change per key at a time, until the last event arrived.
    const keys = await Promise.all(Array.from({ length: 10 }, async (_, i) => (await api(s.base, infra, 'POST', '/api/v1/apikeys', { name: `bench-burst-${i}` })).json.id as string));
    const started = performance.now();
    const burst: string[] = [];
    await Promise.all(
      keys.map(async (id, k) => {
        for (let i = 0; i < 50; i++) {
          const description = `burst-${k}-${i}`;
          const res = await api(s.base, infra, 'PATCH', `/api/v1/apikeys/${id}`, { description });
          if (res.status !== 200) throw new Error(`PATCH ${res.status}`);
          burst.push(description);
        }
      }),
    );
    const committed = performance.now();
    while (!burst.every((d) => arrivals.has(d))) await new Promise((r) => setTimeout(r, 5));
    const done = performance.now();
    report('9_burst_500_changes_committed_s', round((committed - started) / 1000));
    report('9_burst_500_all_delivered_s', round((done - started) / 1000));
    report('9_burst_deliveries_per_s', Math.round(500 / ((done - started) / 1000)));
  } finally {
    s.child.kill('SIGTERM');
    receiver.close();
  }
}
