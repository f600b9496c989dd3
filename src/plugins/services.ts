// Builds the services from their dependencies and wires their lifecycle (flush at shutdown).
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createAuthenticator, type Authenticator } from '../auth/authenticator.js';
import { createKeyHasher, instrumentHasher, type KeyHasher } from '../auth/hasher.js';
import { createKeyCache, type KeyCache } from '../auth/key-cache.js';
import { createVerificationQueue, type VerificationQueue } from '../auth/verification-queue.js';
import type { Config } from '../config.js';
import { createKeyEventListener, type KeyEventListener, type KeyEventOp } from '../db/key-events.js';
import { createApiKeyService, type ApiKeyService } from '../services/api-keys.js';
import { createKeyStore } from '../store/api-keys.js';
import { bootstrapInfrastructureKey, FIRST_KEY_HINT, hasUsableKey } from '../services/bootstrap.js';
import { createCursorKeyLoader } from '../services/cursor-key.js';
import { createHealthCheck, type HealthCheck } from '../services/health.js';
import { createHistoryService, type HistoryService } from '../services/history.js';
import { createRoleService, type RoleService } from '../services/roles.js';
import { createSecurityEventRecorder, type SecurityEventRecorder } from '../services/security-events.js';
import { createLastUsedRecorder, type LastUsedRecorder } from '../services/last-used.js';
import { createVerifyEventHub, type VerifyEventHub } from '../services/verify-events.js';
import { createScheduler, type Scheduler } from '../policies/scheduler.js';
import { systemResolver, type Resolver } from '../webhooks/address-guard.js';
import { createDispatcher, type Dispatcher } from '../webhooks/dispatcher.js';
import { createSecretBox } from '../webhooks/secret-box.js';
import { createWebhookService, type WebhookService } from '../webhooks/service.js';
import { createWebhookStore } from '../webhooks/store.js';
import { createUsageRecorder, type UsageRecorder } from '../usage/recorder.js';
import { createUsageService, type UsageService } from '../usage/service.js';
import { createUsageStore } from '../usage/store.js';

export interface Services {
  hasher: KeyHasher;
  keys: ApiKeyService;
  roles: RoleService;
  history: HistoryService;
  securityEvents: SecurityEventRecorder;
  /** The shared key that signs paging cursors. */
  cursorKey: () => Promise<Buffer>;
  auth: Authenticator;
  lastUsed: LastUsedRecorder;
  cache: KeyCache;
  health: HealthCheck;
  /** Where argon2 verifications wait their turn (bounded). */
  verifications: VerificationQueue;
  listener: KeyEventListener;
  /** The verify event stream's subscribers (services that cache verifications). */
  verifyEvents: VerifyEventHub;
  webhooks: WebhookService;
  /** Sends what the outbox holds; null while webhooks are off (no WEBHOOK_SECRET_KEY). */
  dispatcher: Dispatcher | null;
  /** Expiry warnings, idle keys, pruning: every instance ticks, one acts. */
  scheduler: Scheduler;
  /** Counts each use of a known key per minute and outcome (in memory, written in batches). */
  usage: UsageRecorder;
  /** Reads those counts: one key's buckets, the busiest keys; rolls them up. */
  usageReports: UsageService;
}

export interface ServiceOptions {
  config: Config;
  hasher?: KeyHasher;
  /** The policies' "now" (tests move it days ahead). */
  clock?: () => Date;
  /** How webhook hosts resolve (tests point names at chosen addresses). */
  resolve?: Resolver;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

async function servicesPlugin(app: FastifyInstance, opts: ServiceOptions) {
  const { prisma, log } = app;
  const { config } = opts;
  const hasher = instrumentHasher(opts.hasher ?? createKeyHasher(config.argon2), app.metrics);
  // Hits skip the database only while the listener's lease runs (it is created below).
  const cache = createKeyCache({ ...config.authCache, trustedUntil: () => listener.leaseUntil });
  const verifications = createVerificationQueue({
    concurrency: config.argon2.maxConcurrency,
    queue: config.argon2.maxQueue,
    suspectShare: config.argon2.suspectShare,
    suspectQueue: config.argon2.suspectQueue,
  });
  const keyStore = createKeyStore(prisma);
  const lastUsed = createLastUsedRecorder({ keys: keyStore, log, flushEveryMs: config.lastUsedFlushMs });
  const usageStore = createUsageStore(prisma, { writeTimeoutMs: Math.max(50, Math.floor(config.db.queryTimeoutMs * 0.8)) });
  const usage = createUsageRecorder({ store: usageStore, log, enabled: config.usage.enabled, flushEveryMs: config.usage.flushMs, maxPending: config.usage.maxPending, now: opts.clock });
  const usageReports = createUsageService({
    store: usageStore,
    keyExists: async (id) => (await keyStore.find(id)) !== null,
    flush: () => usage.flush(),
    now: opts.clock ?? (() => new Date()),
    minutesKeptMs: config.usage.minutesKeptMs,
    hoursKeptMs: config.usage.hoursKeptMs,
    retentionDays: config.usage.retentionDays,
  });
  const instanceId = randomUUID();
  // The listener is created below (the hub asks it, once running, whether this instance hears every change).
  const verifyEvents = createVerifyEventHub({ heartbeatMs: config.verifyEventsHeartbeatMs, listening: () => listener.listening, maxAgeMs: config.authCache.maxAgeMs });
  /**
   * After a change commits: this instance's cache at once; the reply waits until its subscribers
   * have been sent the invalidation and, for this instance's own changes (`seq`), until every
   * other instance confirmed it applied them too (peer-acks.ts).
   */
  const onChanged = (keyId: string, op: KeyEventOp, seq?: number): Promise<void> | void => {
    dispatcher?.wake(); // the change may have queued webhook deliveries
    if (op === 'create') return cache.keyCreated();
    cache.invalidateKey(keyId, op === 'delete');
    const sent = verifyEvents.keyChanged(keyId);
    return seq === undefined ? sent : Promise.all([sent, listener.confirmed([seq])]).then(() => {});
  };
  const cursorKey = createCursorKeyLoader(prisma);
  const keys = createApiKeyService({ prisma, store: keyStore, hasher, log, onChanged, instanceId, cursorKey });
  const history = createHistoryService({ prisma, cursorKey });
  const roles = createRoleService({ prisma, instanceId, onKeyChanged: onChanged, cursorKey });
  const auth = createAuthenticator({ keys: keyStore, hasher, lastUsed, cache, verifications, log, infrastructureKey: config.infrastructureKey });
  const listener = createKeyEventListener({
    url: app.database.directUrl,
    log,
    instanceId,
    heartbeatMs: config.db.listenHeartbeatMs,
    notify: async (channel, payload) => {
      await prisma.$executeRaw`SELECT pg_notify(${channel}, ${payload})`;
    },
    onChanged: (event) => {
      if (event.keyId) return onChanged(event.keyId, event.op);
      cache.clear();
      verifyEvents.reset('unknown-change'); // a change that names no key: consumers must forget everything too
    },
    onState: (listening) => {
      cache.setFillable(listening && config.authCache.maxEntries > 0);
      if (!listening) verifyEvents.reset('listener-lost');
    },
  });
  const securityEvents = createSecurityEventRecorder({
    prisma,
    log,
    flushEveryMs: config.securityEvents.flushMs,
    retentionDays: config.securityEvents.retentionDays,
    maxBuckets: config.securityEvents.maxBuckets,
    writeTimeoutMs: Math.max(50, Math.floor(config.db.queryTimeoutMs * 0.8)),
    cursorKey,
  });
  const outbound = { allowHttp: config.webhooks.allowHttp, allowedNetworks: config.webhooks.allowedNetworks };
  const resolve = opts.resolve ?? systemResolver;
  const box = config.webhooks.secretKey ? createSecretBox(config.webhooks.secretKey) : null;
  const dispatcher: Dispatcher | null = box
    ? createDispatcher({
        store: createWebhookStore(prisma),
        box,
        policy: outbound,
        resolve,
        instanceId,
        log,
        metrics: app.metrics,
        timeoutMs: config.webhooks.timeoutMs,
        retryScheduleMs: config.webhooks.retryScheduleMs,
        disableAfterMs: config.webhooks.disableAfterMs,
        pollMs: config.webhooks.pollMs,
        concurrency: config.webhooks.concurrency,
      })
    : null;
  const webhooks = createWebhookService({ prisma, box, dispatcher, policy: outbound, resolve, cursorKey });
  const scheduler = createScheduler({
    prisma,
    directUrl: app.database.directUrl,
    keys: keyStore,
    keyService: keys,
    log,
    metrics: app.metrics,
    clock: opts.clock ?? (() => new Date()),
    expiryLeadsMs: config.policies.expiryLeadsMs,
    idleDisableDays: config.policies.idleDisableDays,
    intervalMs: config.policies.intervalMs,
    retentionDays: config.webhooks.retentionDays,
    connectTimeoutMs: config.timeouts.dbConnectMs,
    flushLastUsed: () => lastUsed.flush(),
    maintainUsage: (at) => usageReports.maintain(at),
    onEvents: () => dispatcher?.wake(),
  });
  app.decorate('services', { hasher, keys, roles, history, auth, lastUsed, cache, health: createHealthCheck(prisma), verifications, listener, securityEvents, cursorKey, verifyEvents, webhooks, dispatcher, scheduler, usage, usageReports });

  await listener.start();
  app.addHook('onClose', () => listener.stop());
  // Streams never end by themselves: end them as the shutdown starts, so close() is not held open.
  app.addHook('preClose', async () => verifyEvents.reset('shutting-down'));
  lastUsed.start();
  app.onFlush('lastUsedAt', () => lastUsed.stop());
  securityEvents.start();
  usage.start();
  app.onFlush('usage', () => usage.stop());
  app.onFlush('securityEvents', () => securityEvents.stop());
  // Attempts in flight get a few seconds; one cut off is retried (by any instance) when its lease runs out.
  if (dispatcher) {
    dispatcher.start();
    app.onFlush('webhooks', () => dispatcher.stop(Math.min(5_000, config.timeouts.shutdownMs / 2)));
  }
  scheduler.start();
  app.onFlush('scheduler', () => scheduler.stop());

  await bootstrapInfrastructureKey({ secret: opts.config.infrastructureKey, prisma, hasher, keys, log });
  // A hint only: it never delays a start longer than a health check would wait, and never fails one.
  if ((await hasUsableKey(keyStore, config.timeouts.dbHealthMs).catch(() => true)) === false) log.warn(FIRST_KEY_HINT);
}

export default fp(servicesPlugin, { name: 'services', fastify: '5.x', dependencies: ['prisma', 'lifecycle', 'metrics'] });
