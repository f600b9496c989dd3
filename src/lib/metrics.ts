// Prometheus metrics (prom-client), one registry per app: no global registry, so two apps in
// one process (the tests) never share or double-register series. When metrics are off, the
// recorder is a set of no-ops and no hook is installed, so the hot path pays nothing.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the gauges read at scrape time. */
export interface GaugeSources {
  cache: () => { entries: number; negative: number };
  argon2: () => { running: number; waiting: number };
  pool: () => { total: number; idle: number; waiting: number; max: number };
  listener: () => { listening: boolean; peers: number; timeouts: number; lastRoundTripMs?: number };
  usage: () => { pending: number; dropped: number };
}

export interface Metrics {
  /** null when metrics are off. */
  readonly registry: Registry | null;
  request(method: string, route: string, status: number, seconds: number): void;
  /** "OK", or the refusal's error code (API_KEY_INVALID, FORBIDDEN, RATE_LIMITED, …). */
  authOutcome(outcome: string): void;
  cacheLookup(hit: boolean): void;
  argon2(op: 'hash' | 'verify', seconds: number): void;
  rateLimited(scope: 'key' | 'ip' | 'prefix' | 'revoke'): void;
  /** One webhook delivery attempt: delivered, failed with a retry to come, or failed for good. */
  webhookAttempt(outcome: 'succeeded' | 'retrying' | 'failed', seconds: number): void;
  /** One scheduler tick: this instance acted, another held the lock, or it failed. */
  schedulerRun(outcome: 'acted' | 'skipped' | 'failed', actions?: { expiring: number; expired: number; disabledIdle: number }): void;
  observe(sources: GaugeSources): void;
}

const noop = () => {};
export const NO_METRICS: Metrics = {
  registry: null,
  request: noop,
  authOutcome: noop,
  cacheLookup: noop,
  argon2: noop,
  rateLimited: noop,
  webhookAttempt: noop,
  schedulerRun: noop,
  observe: noop,
};

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const requests = new Counter({
    name: 'keyward_http_requests_total',
    help: 'HTTP requests served, by method, route template and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'keyward_http_request_duration_seconds',
    help: 'Time from receiving a request to sending its reply, by method, route template and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const auth = new Counter({
    name: 'keyward_auth_outcomes_total',
    help: 'Authentication and authorisation outcomes on protected routes: OK or the refusal code.',
    labelNames: ['outcome'] as const,
    registers,
  });
  const cacheHits = new Counter({ name: 'keyward_auth_cache_hits_total', help: 'Presented keys answered from the verified-key cache.', registers });
  const cacheMisses = new Counter({
    name: 'keyward_auth_cache_misses_total',
    help: 'Presented keys not in the verified-key cache (checked against the database, argon2 if the prefix matches).',
    registers,
  });
  const argon2 = new Histogram({
    name: 'keyward_argon2_duration_seconds',
    help: 'argon2id hash and verify durations.',
    labelNames: ['op'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const rejections = new Counter({
    name: 'keyward_rate_limit_rejections_total',
    help: 'Requests refused with 429: per API key, or per client address for requests without a valid key.',
    labelNames: ['scope'] as const,
    registers,
  });
  const webhookAttempts = new Histogram({
    name: 'keyward_webhook_attempt_duration_seconds',
    help: 'Webhook delivery attempts by outcome (succeeded, retrying: failed with a retry scheduled, failed: no retry left), and how long each took.',
    labelNames: ['outcome'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const schedulerRuns = new Counter({
    name: 'keyward_scheduler_runs_total',
    help: 'Policy scheduler ticks on this instance: acted (it held the lock), skipped (another instance did), failed.',
    labelNames: ['outcome'] as const,
    registers,
  });
  const schedulerActions = new Counter({
    name: 'keyward_scheduler_actions_total',
    help: 'What the policy scheduler did on this instance: expiry warnings and expired notices recorded, idle keys disabled.',
    labelNames: ['action'] as const,
    registers,
  });
  const schedulerLast = new Gauge({ name: 'keyward_scheduler_last_run_timestamp_seconds', help: 'When this instance last ran the policies (acted or skipped).', registers });

  // Every label combination starts at zero, so rate() works from the first scrape.
  for (const outcome of ['succeeded', 'retrying', 'failed'] as const) webhookAttempts.zero({ outcome });
  for (const outcome of ['acted', 'skipped', 'failed'] as const) schedulerRuns.inc({ outcome }, 0);
  for (const action of ['expiring', 'expired', 'disabled_idle'] as const) schedulerActions.inc({ action }, 0);
  for (const scope of ['key', 'ip', 'prefix', 'revoke'] as const) rejections.inc({ scope }, 0);
  for (const op of ['hash', 'verify'] as const) argon2.zero({ op });

  // Label lookups hash the label set on every call; the combinations are few (route templates,
  // statuses, outcome codes), so their children are looked up once and kept.
  const perRequest = new Map<string, { count: ReturnType<typeof requests.labels>; time: ReturnType<typeof latency.labels> }>();
  const perOutcome = new Map<string, ReturnType<typeof auth.labels>>();

  return {
    registry,
    request(method, route, status, seconds) {
      const key = `${method} ${status} ${route}`;
      let series = perRequest.get(key);
      if (!series) {
        const labels = { method, route, status: String(status) };
        series = { count: requests.labels(labels), time: latency.labels(labels) };
        perRequest.set(key, series);
      }
      series.count.inc();
      series.time.observe(seconds);
    },
    authOutcome(outcome) {
      let child = perOutcome.get(outcome);
      if (!child) perOutcome.set(outcome, (child = auth.labels({ outcome })));
      child.inc();
    },
    cacheLookup: (hit) => (hit ? cacheHits.inc() : cacheMisses.inc()),
    argon2: (op, seconds) => argon2.observe({ op }, seconds),
    rateLimited: (scope) => rejections.inc({ scope }),
    webhookAttempt: (outcome, seconds) => webhookAttempts.observe({ outcome }, seconds),
    schedulerRun(outcome, actions) {
      schedulerRuns.inc({ outcome });
      if (outcome !== 'failed') schedulerLast.set(Date.now() / 1000);
      if (actions) {
        schedulerActions.inc({ action: 'expiring' }, actions.expiring);
        schedulerActions.inc({ action: 'expired' }, actions.expired);
        schedulerActions.inc({ action: 'disabled_idle' }, actions.disabledIdle);
      }
    },
    observe(sources) {
      const gauge = (name: string, help: string, read: (g: Gauge) => void, labelNames: string[] = []) =>
        new Gauge({
          name,
          help,
          labelNames,
          registers,
          collect() {
            read(this);
          },
        });
      gauge('keyward_auth_cache_entries', 'Verified keys held in the cache.', (g) => g.set(sources.cache().entries));
      gauge('keyward_auth_negative_cache_entries', 'Recently refused secrets remembered (no argon2 on a repeat).', (g) =>
        g.set(sources.cache().negative),
      );
      gauge('keyward_argon2_in_progress', 'argon2 verifications running now.', (g) => g.set(sources.argon2().running));
      gauge('keyward_argon2_queue_depth', 'argon2 verifications waiting for a slot.', (g) => g.set(sources.argon2().waiting));
      gauge(
        'keyward_db_pool_connections',
        'PostgreSQL pool connections: open (total) and idle.',
        (g) => {
          const p = sources.pool();
          g.set({ state: 'total' }, p.total);
          g.set({ state: 'idle' }, p.idle);
        },
        ['state'],
      );
      gauge('keyward_db_pool_waiting', 'Queries waiting for a pool connection.', (g) => g.set(sources.pool().waiting));
      gauge('keyward_db_pool_max', 'The pool size limit (DB_POOL_MAX).', (g) => g.set(sources.pool().max));
      gauge('keyward_key_listener_up', '1 while LISTEN is proven (a NOTIFY through the pool came back at the last heartbeat).', (g) =>
        g.set(sources.listener().listening ? 1 : 0),
      );
      gauge('keyward_key_listener_round_trip_seconds', 'The last NOTIFY round trip (pool to LISTEN).', (g) =>
        g.set((sources.listener().lastRoundTripMs ?? 0) / 1000),
      );
      gauge('keyward_instances_peers', 'Other instances heard on this database within the lease (they confirm each change).', (g) =>
        g.set(sources.listener().peers),
      );
      gauge('keyward_usage_pending_key_minutes', 'Per-key usage counters (key and minute) in memory, waiting for their batched write.', (g) => g.set(sources.usage().pending));
      gauge('keyward_usage_dropped_key_minutes', 'Usage counters dropped since start because the database did not take them within USAGE_MAX_PENDING.', (g) =>
        g.set(sources.usage().dropped),
      );
      gauge('keyward_change_confirm_timeouts', 'Changes another instance did not confirm within the lease, since start.', (g) =>
        g.set(sources.listener().timeouts),
      );
    },
  };
}
