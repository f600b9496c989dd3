// npm run bench, section 10: what per-key usage counting costs a cached authenticated request.
//   a. the same server, the same key and route (/bench/authed), counting switched on and off
//      between alternating rounds: CPU per request of each, best round and median;
//   b. the counting call itself, in this process: a million uses spread over 1,000 keys
//      (no write: the store is never reached), CPU per call.
import { createUsageRecorder } from '../src/usage/recorder.js';
import { autocannon } from './support.js';

type Stats = { cpuUs: number };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number, d = 2) => Number(x.toFixed(d));

export async function benchUsage(ctx: { base: string; key: string; rounds: number; seconds: number; connections: number; report: (name: string, value: number | string) => void }) {
  const { base, report } = ctx;
  const stats = async (): Promise<Stats> => (await fetch(`${base}/bench/stats`)).json() as Promise<Stats>;
  const setCounting = async (enabled: boolean) => {
    const res = await fetch(`${base}/bench/usage-counting`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ enabled }) });
    if (!res.ok) throw new Error(`usage-counting: ${res.status}`);
  };
  const round_ = async (enabled: boolean) => {
    await setCounting(enabled);
    const before = await stats();
    const load = await autocannon(`${base}/bench/authed`, { seconds: ctx.seconds, connections: ctx.connections, headers: [`x-api-key=${ctx.key}`] });
    const after = await stats();
    if (load.non2xx) throw new Error(`${load.non2xx} non-2xx replies`);
    return (after.cpuUs - before.cpuUs) / load.total;
  };
  const on: number[] = [];
  const off: number[] = [];
  for (let i = 0; i < ctx.rounds; i++) {
    // Turns about: a round's place must not be its cost.
    if (i % 2) {
      off.push(await round_(false));
      on.push(await round_(true));
    } else {
      on.push(await round_(true));
      off.push(await round_(false));
    }
  }
  await setCounting(true);
  report('10_counting_off_cpu_us_per_request_best', round(Math.min(...off), 1));
  report('10_counting_on_cpu_us_per_request_best', round(Math.min(...on), 1));
  report('10_counting_extra_cpu_us_per_request_best', round(Math.min(...on) - Math.min(...off)));
  report('10_counting_extra_cpu_us_per_request_median', round(median(on) - median(off)));
  report('10_cpu_us_per_request_by_round', `${on.map((x) => round(x, 1)).join('/')} on vs ${off.map((x) => round(x, 1)).join('/')} off`);

  // b: the call on the request path, alone.
  const silent = { warn() {}, info() {}, error() {}, debug() {}, trace() {}, fatal() {}, child: () => silent, level: 'silent' } as never;
  const recorder = createUsageRecorder({ store: { add: async () => {} }, log: silent, enabled: true, flushEveryMs: 60_000, maxPending: 10_000_000 });
  const ids = Array.from({ length: 1_000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  const calls = 1_000_000;
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = process.cpuUsage();
    for (let i = 0; i < calls; i++) recorder.count(ids[i % 1_000]!, 0);
    const used = process.cpuUsage(t);
    best = Math.min(best, (used.user + used.system) / calls);
    await recorder.flush();
  }
  report('10_count_call_cpu_ns_best', round(best * 1000, 0));
}
