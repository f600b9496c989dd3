// Cross-instance invalidation: every change to a key runs `pg_notify(KEY_CHANNEL, id)` inside
// its transaction (delivered on commit); every instance LISTENs on a dedicated connection. While
// that connection is down the instance cannot hear about changes, so its cache is emptied and
// kept from filling until it is listening again.
import pg from 'pg';
import { pgConfigFromUrl } from './pg-config.js';

export const KEY_CHANNEL = 'keyward_api_keys';

export type KeyEventOp = 'create' | 'update' | 'delete';
export interface KeyEvent {
  instanceId: string;
  op: KeyEventOp;
  keyId: string;
}

export function encodeKeyEvent(e: KeyEvent): string {
  return `${e.op} ${e.keyId} ${e.instanceId}`;
}

export function decodeKeyEvent(payload: string): KeyEvent | null {
  const [op, keyId, instanceId] = payload.split(' ');
  if ((op !== 'create' && op !== 'update' && op !== 'delete') || !keyId) return null;
  return { op, keyId, instanceId: instanceId ?? '' };
}

export interface KeyEventsLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export function createKeyEventListener(opts: {
  url: string;
  log: KeyEventsLog;
  /** Changes made by other processes (this one's own are applied before it replies); an empty
   *  keyId means "unknown: assume anything changed". */
  onChanged: (event: KeyEvent) => void;
  instanceId: string;
  /** Called with true once LISTEN is in place, false the moment the connection is lost. */
  onState: (listening: boolean) => void;
  heartbeatMs?: number;
}) {
  const heartbeatMs = opts.heartbeatMs ?? 5_000;
  let client: pg.Client | undefined;
  let stopped = false;
  let attempt = 0;
  let retry: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let listening = false;

  function down(reason: unknown) {
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = undefined;
    const c = client;
    client = undefined;
    c?.removeAllListeners();
    c?.on('error', () => {}); // late errors from the dead connection
    void c?.end().catch(() => {});
    if (listening) opts.log.warn({ err: reason }, 'key change listener lost its connection; cache disabled until it is back');
    listening = false;
    opts.onState(false);
    if (!stopped) {
      const delay = Math.min(5_000, 100 * 2 ** attempt++);
      retry = setTimeout(() => void connect(), delay);
      retry.unref();
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
    c.on('notification', (msg) => {
      const event = msg.channel === KEY_CHANNEL && msg.payload ? decodeKeyEvent(msg.payload) : null;
      // Unreadable payloads (a hand-written NOTIFY) are taken as "something changed".
      if (!event) opts.onChanged({ op: 'update', keyId: '', instanceId: '' });
      else if (event.instanceId !== opts.instanceId) opts.onChanged(event);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${KEY_CHANNEL}`);
    } catch (err) {
      if (client === c) down(err);
      return;
    }
    if (client !== c || stopped) return;
    attempt = 0;
    listening = true;
    // A connection can die silently (no FIN, packets dropped): a cheap query that must answer
    // within the heartbeat interval notices it.
    let inFlight = false;
    heartbeat = setInterval(() => {
      if (inFlight) return;
      inFlight = true;
      const timer = setTimeout(() => client === c && down(new Error('heartbeat timed out')), Math.max(1_000, heartbeatMs / 2));
      c.query('SELECT 1').then(
        () => {
          clearTimeout(timer);
          inFlight = false;
        },
        (err) => {
          clearTimeout(timer);
          if (client === c) down(err);
        },
      );
    }, heartbeatMs);
    heartbeat.unref();
    opts.onState(true);
    opts.log.info({ channel: KEY_CHANNEL }, 'listening for key changes');
  }

  return {
    async start() {
      await connect();
    },
    get listening() {
      return listening;
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
      listening = false;
      if (c) {
        c.removeAllListeners();
        c.on('error', () => {});
        await c.end().catch(() => {});
      }
    },
  };
}

export type KeyEventListener = ReturnType<typeof createKeyEventListener>;
