// The event stream of GET /api/v1/apikeys/verify/events: what services verifying keys hear so
// their own caches follow every change. Fed by the same changes that keep this instance's cache
// true (its own written to the network before the change is answered, so a consumer on this
// instance hears of it before the caller does; everyone else's through LISTEN), it sends `invalidate` with
// key ids only, `reset` when it can no longer vouch that it missed nothing (its listener is
// down, or a change named no key) and then ends the stream, and `heartbeat` every few seconds
// so a consumer notices a dead stream. Subscribers that do not keep up are cut off (their
// library then forgets everything and reconnects) rather than buffered without bound.

export interface Subscriber {
  /** Writes one event (`written` once it is handed to the network); returns the bytes the connection still has buffered. */
  send(event: string, data: string, written?: () => void): number;
  /** Ends the stream (after a final event, when there is one). */
  end(): void;
  /** Closes the connection at once (a subscriber that does not read). */
  cut(): void;
  /** The key the subscriber authenticated with: a change to it ends the stream, so it re-authenticates. */
  keyId: string;
}

export const MAX_BUFFERED_BYTES = 1 << 20;
/** At most this many ids per `invalidate` event (a role held by 100,000 keys makes several). */
const IDS_PER_EVENT = 500;
/** The longest a change's reply waits for its invalidation to be written to this instance's subscribers. */
export const WRITE_WAIT_MS = 50;

export function createVerifyEventHub(opts: { heartbeatMs: number; listening: () => boolean; maxAgeMs: number }) {
  const subscribers = new Set<Subscriber>();
  let pending: Set<string> | null = null;
  /** Resolves once the pending invalidation is written to every subscriber (or WRITE_WAIT_MS passed). */
  let written: Promise<void> = Promise.resolve();
  let settleWritten: () => void = () => {};
  let heartbeat: NodeJS.Timeout | undefined;

  function drop(sub: Subscriber, event?: [string, string], cut = false) {
    if (!subscribers.delete(sub)) return;
    if (cut) sub.cut();
    else {
      if (event) sub.send(event[0], event[1]);
      sub.end();
    }
    if (subscribers.size === 0 && heartbeat) {
      clearInterval(heartbeat);
      heartbeat = undefined;
    }
  }

  function broadcast(event: string, data: string, written?: () => void) {
    for (const sub of subscribers) if (sub.send(event, data, written) > MAX_BUFFERED_BYTES) drop(sub, undefined, true);
  }

  function flush() {
    const ids = [...pending!];
    pending = null;
    const done = settleWritten;
    let outstanding = 1;
    const one = () => --outstanding === 0 && done();
    for (let i = 0; i < ids.length; i += IDS_PER_EVENT) {
      outstanding += subscribers.size;
      broadcast('invalidate', JSON.stringify({ keyIds: ids.slice(i, i + IDS_PER_EVENT) }), one);
    }
    one();
    const changed = new Set(ids);
    for (const sub of subscribers) if (changed.has(sub.keyId)) drop(sub);
  }

  return {
    /** Whether a new subscriber can be told everything from now on. */
    get accepting() {
      return opts.listening();
    },
    get size() {
      return subscribers.size;
    },

    subscribe(sub: Subscriber): () => void {
      subscribers.add(sub);
      // maxAgeMs: changes made behind keyward's back (direct SQL) send no event; keyward itself
      // re-reads a key that old, so a consumer must not keep an answer longer either.
      sub.send('reset', JSON.stringify({ reason: 'connected', heartbeatMs: opts.heartbeatMs, maxAgeMs: opts.maxAgeMs }));
      if (!heartbeat) {
        heartbeat = setInterval(() => broadcast('heartbeat', '{}'), opts.heartbeatMs);
        heartbeat.unref();
      }
      return () => drop(sub);
    },

    /**
     * A key changed, was re-roled or deleted. Changes made in one go (a role's holders) leave as
     * one event, in a microtask: for this instance's own changes that is before the reply to the
     * change is written, so a consumer on this instance hears of it before its caller does.
     */
    keyChanged(keyId: string): Promise<void> {
      if (subscribers.size === 0) return Promise.resolve();
      if (!pending) {
        pending = new Set();
        written = new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, WRITE_WAIT_MS);
          settleWritten = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        queueMicrotask(flush);
      }
      pending.add(keyId);
      return written;
    },

    /** This instance can no longer vouch for what its subscribers heard: tell them, and end every stream. */
    reset(reason: string) {
      const data = JSON.stringify({ reason });
      for (const sub of [...subscribers]) drop(sub, ['reset', data]);
    },
  };
}

export type VerifyEventHub = ReturnType<typeof createVerifyEventHub>;
