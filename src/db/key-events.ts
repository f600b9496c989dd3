// Cross-instance invalidation: every change to a key runs `pg_notify(KEY_CHANNEL, id)` inside
// its transaction (delivered on commit); every instance LISTENs on a dedicated connection. While
// that connection is down the instance cannot hear about changes, so its cache is emptied and
// kept from filling until it is listening again.
//
// "Listening" is proven, not assumed: behind a pooler in transaction mode LISTEN succeeds and
// then hears nothing. So the instance sends a NOTIFY through the pool (where changes are sent)
// and must hear it on the listening connection — at start, and at every heartbeat. A proof also
// renews the cache's lease (peer-acks.ts): PostgreSQL delivers notifications in commit order, so a
// probe heard means every change committed before it was sent has been applied.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ackChannelOf, createPeerAcks, PRESENCE_CHANNEL } from './peer-acks.js';
import { pgConfigFromUrl } from './pg-config.js';

export const KEY_CHANNEL = 'keyward_api_keys';

export type KeyEventOp = 'create' | 'update' | 'delete';
export interface KeyEvent {
  instanceId: string;
  op: KeyEventOp;
  keyId: string;
  /** Present when the writer waits for other instances to confirm (peer-acks.ts). */
  seq?: number;
}

export function encodeKeyEvent(e: KeyEvent): string {
  return `${e.op} ${e.keyId} ${e.instanceId}${e.seq === undefined ? '' : ` ${e.seq}`}`;
}

export function decodeKeyEvent(payload: string): KeyEvent | null {
  const [op, keyId, instanceId, seq] = payload.split(' ');
  if ((op !== 'create' && op !== 'update' && op !== 'delete') || !keyId) return null;
  const n = seq === undefined ? undefined : Number(seq);
  return { op, keyId, instanceId: instanceId ?? '', ...(n !== undefined && Number.isSafeInteger(n) ? { seq: n } : {}) };
}

/** Thrown at start when LISTEN cannot hear what is sent through the pool. */
export class ListenUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenUnavailableError';
  }
}

export interface ListenRoute {
  /** Where LISTEN runs, and what to call it in a message. */
  listenUrl: string;
  listenVariable: string;
  notifyUrl: string;
  notifyVariable: string;
}

/** The start-up refusal: names the variables and what to do. */
export function listenRefusal(route: Pick<ListenRoute, 'listenVariable' | 'notifyVariable'>, waitedMs: number): string {
  const same = route.listenVariable === route.notifyVariable;
  return (
    `keyward cannot hear PostgreSQL notifications: a NOTIFY sent through ${route.notifyVariable} did not reach a LISTEN on ${route.listenVariable} within ${waitedMs} ms. ` +
    (same
      ? `This is what a connection pooler in transaction or statement mode (PgBouncer, pgcat, RDS Proxy, Supavisor) does, and without it a change on one instance would not reach the others' caches. Set DATABASE_DIRECT_URL to a direct connection to the same database (it carries LISTEN, migrations and their lock); DATABASE_URL may stay pooled.`
      : `DATABASE_DIRECT_URL must be a direct connection (not through a pooler) to the same database as DATABASE_URL.`)
  );
}

/**
 * Proves, before anything else runs, that a NOTIFY sent through `notifyUrl` reaches a LISTEN on
 * `listenUrl` (same database, no pooler between): `{ heard: ms }`. Throws ListenUnavailableError
 * when both connections work and the NOTIFY never arrives. A database that cannot be reached or
 * does not answer within `connectMs` proves nothing either way: `{ unreachable }` (the listener
 * proves it again before the cache is used).
 */
export async function proveNotifyRoundTrip(
  route: ListenRoute,
  opts: { timeoutMs?: number; connectMs?: number } = {},
): Promise<{ heard: number } | { unreachable: Error }> {
  const timeoutMs = opts.timeoutMs ?? 3_000;
  const connectMs = opts.connectMs ?? 5_000;
  const channel = `keyward_probe_${randomBytes(8).toString('hex')}`;
  const nonce = randomBytes(8).toString('hex');
  const client = (url: string) => {
    const c = new pg.Client({ ...pgConfigFromUrl(url), connectionTimeoutMillis: connectMs, query_timeout: connectMs });
    c.on('error', () => {});
    return c;
  };
  const listener = client(route.listenUrl);
  // Sent on another connection: on the listening connection itself a pooler would hand the
  // echo straight back and the proof would prove nothing.
  const sender = client(route.notifyUrl);
  let heard!: () => void;
  const heardPromise = new Promise<boolean>((r) => (heard = () => r(true)));
  listener.on('notification', (m) => m.channel === channel && m.payload === nonce && heard());
  let timer: NodeJS.Timeout | undefined;
  const deadline = (ms: number) => new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    const connected = await Promise.race([
      (async () => {
        await Promise.all([listener.connect(), sender.connect()]);
        await listener.query(`LISTEN ${channel}`);
        return true as const;
      })(),
      deadline(connectMs),
    ]).catch((err: Error) => err);
    clearTimeout(timer);
    if (connected !== true) return { unreachable: connected || new Error(`no answer within ${connectMs} ms`) };
    const started = performance.now();
    const sent = await sender.query('SELECT pg_notify($1, $2)', [channel, nonce]).then(
      () => null,
      (err: Error) => err,
    );
    if (sent) return { unreachable: sent };
    const ok = await Promise.race([heardPromise, deadline(timeoutMs)]);
    clearTimeout(timer);
    if (!ok) throw new ListenUnavailableError(listenRefusal(route, timeoutMs));
    return { heard: performance.now() - started };
  } finally {
    clearTimeout(timer);
    await Promise.all([listener.end().catch(() => {}), sender.end().catch(() => {})]);
  }
}

export interface KeyEventsLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export function createKeyEventListener(opts: {
  url: string;
  log: KeyEventsLog;
  /** Changes made by other processes (this one's own are applied before it replies); an empty
   *  keyId means "unknown: assume anything changed". Resolves once applied everywhere it must be. */
  onChanged: (event: KeyEvent) => Promise<void> | void;
  instanceId: string;
  /** Called with true once LISTEN is proven, false the moment the connection is lost. */
  onState: (listening: boolean) => void;
  /** Sends a NOTIFY the way changes are sent (through the pool). */
  notify: (channel: string, payload: string) => Promise<void>;
  heartbeatMs?: number;
}) {
  const heartbeatMs = opts.heartbeatMs ?? 2_000;
  // A proof covers the next heartbeat and its probe's own wait, with room for a late timer.
  const leaseMs = Math.round(heartbeatMs * 2.5);
  const ackChannel = ackChannelOf(opts.instanceId);
  // Confirmations go out on the listening connection itself (direct, so NOTIFY works there, and
  // a plain query costs a fraction of one through the ORM); only the probe must take the pool's path.
  const acks = createPeerAcks({
    instanceId: opts.instanceId,
    leaseMs,
    log: opts.log,
    send: async (channel, payload) => {
      if (!client) throw new Error('not connected');
      await client.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
  });
  let client: pg.Client | undefined;
  let stopped = false;
  let attempt = 0;
  let retry: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let listening = false;
  /** Date.now() until which cache hits may be trusted without a database read. */
  let leaseUntil = 0;
  let probe: { nonce: string; sentAt: number; heard: () => void } | undefined;
  let probes = 0;
  let lastRoundTripMs: number | undefined;

  function down(reason: unknown) {
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = undefined;
    leaseUntil = 0;
    probe = undefined;
    const c = client;
    client = undefined;
    c?.removeAllListeners();
    c?.on('error', () => {}); // late errors from the dead connection
    void c?.end().catch(() => {});
    if (listening) opts.log.warn({ err: reason }, 'key change listener lost its connection or stopped hearing; cache disabled until it is back');
    listening = false;
    opts.onState(false);
    if (!stopped) {
      const delay = Math.min(5_000, 100 * 2 ** attempt++);
      retry = setTimeout(() => void connect(), delay);
      retry.unref();
    }
  }

  function onNotification(msg: pg.Notification) {
    const payload = msg.payload ?? '';
    if (msg.channel === PRESENCE_CHANNEL) {
      const [id, word, first] = payload.split(' ');
      if (!id) return;
      if (id !== opts.instanceId) {
        if (word === 'bye') return acks.gone(id);
        acks.seen(id);
        if (first === 'fresh') acks.caughtUp(id);
        return;
      }
      if (probe && word === probe.nonce) probe.heard();
      return;
    }
    if (msg.channel === ackChannel) return acks.received(payload);
    const event = msg.channel === KEY_CHANNEL && payload ? decodeKeyEvent(payload) : null;
    // Unreadable payloads (a hand-written NOTIFY) are taken as "something changed".
    if (!event) return void opts.onChanged({ op: 'update', keyId: '', instanceId: '' });
    if (event.instanceId === opts.instanceId) return;
    const applied = opts.onChanged(event);
    if (event.seq === undefined) return;
    const seq = event.seq;
    if (applied) void applied.then(() => acks.applied(event.instanceId, seq));
    else acks.applied(event.instanceId, seq);
  }

  /** One round trip: true when this instance heard its own probe within `timeoutMs`. */
  async function roundTrip(c: pg.Client, timeoutMs: number, fresh = false): Promise<boolean> {
    const nonce = randomBytes(6).toString('hex');
    const sentAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const heard = new Promise<boolean>((resolve) => {
      probe = { nonce, sentAt, heard: () => resolve(true) };
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      await Promise.race([opts.notify(PRESENCE_CHANNEL, `${opts.instanceId} ${nonce}${fresh ? ' fresh' : ''}`), heard]);
      const ok = await heard;
      if (ok && client === c) {
        probes++;
        lastRoundTripMs = Date.now() - sentAt;
        leaseUntil = Math.max(leaseUntil, sentAt + leaseMs);
      }
      return ok;
    } finally {
      clearTimeout(timer);
      if (probe?.nonce === nonce) probe = undefined;
    }
  }

  async function connect() {
    if (stopped) return;
    const c = new pg.Client({
      ...pgConfigFromUrl(opts.url),
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      connectionTimeoutMillis: 5_000,
    });
    client = c;
    c.on('error', (err) => down(err));
    c.on('end', () => client === c && down(new Error('connection ended')));
    c.on('notification', onNotification);
    try {
      await c.connect();
      await c.query(`LISTEN ${KEY_CHANNEL}; LISTEN ${PRESENCE_CHANNEL}; LISTEN ${ackChannel}`);
      if (!(await roundTrip(c, Math.max(1_000, heartbeatMs), true))) throw new Error('a NOTIFY sent through the pool did not reach the listening connection');
    } catch (err) {
      if (client === c) down(err);
      return;
    }
    if (client !== c || stopped) return;
    attempt = 0;
    listening = true;
    // The same round trip, every heartbeat: it notices a connection that died silently (no FIN,
    // packets dropped), a pool that stopped answering, and renews the lease.
    let inFlight = false;
    heartbeat = setInterval(() => {
      if (inFlight) return;
      inFlight = true;
      roundTrip(c, heartbeatMs).then(
        (ok) => {
          inFlight = false;
          if (!ok && client === c) down(new Error(`heartbeat: a NOTIFY sent through the pool was not heard within ${heartbeatMs} ms`));
        },
        (err) => {
          inFlight = false;
          if (client === c) down(err);
        },
      );
    }, heartbeatMs);
    heartbeat.unref();
    opts.onState(true);
    opts.log.info({ channel: KEY_CHANNEL, roundTripMs: lastRoundTripMs }, 'listening for key changes');
  }

  return {
    async start() {
      await connect();
    },
    get listening() {
      return listening;
    },
    /** Cache hits may skip the database until then (Date.now() ms). */
    get leaseUntil() {
      return leaseUntil;
    },
    /** Resolves when every other live instance confirmed these changes (or after the lease). */
    confirmed(seqs: number[]): Promise<void> {
      return acks.wait(seqs);
    },
    stats() {
      return { listening, probes, lastRoundTripMs, leaseMs, ...acks.stats() };
    },
    /** For tests: the backend pid of the listener connection. */
    async backendPid(): Promise<number | undefined> {
      return (client as unknown as { processID?: number })?.processID;
    },
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      if (heartbeat) clearInterval(heartbeat);
      const c = client;
      client = undefined;
      const wasListening = listening;
      listening = false;
      leaseUntil = 0;
      acks.stop();
      // Others stop waiting for this instance's confirmations at once.
      if (wasListening) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([opts.notify(PRESENCE_CHANNEL, `${opts.instanceId} bye`).catch(() => {}), new Promise((r) => (timer = setTimeout(r, 1_000)))]);
        clearTimeout(timer);
      }
      if (c) {
        c.removeAllListeners();
        c.on('error', () => {});
        await c.end().catch(() => {});
      }
    },
  };
}

export type KeyEventListener = ReturnType<typeof createKeyEventListener>;
