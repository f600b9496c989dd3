// "Refused on the next request, whichever instance answers." A NOTIFY reaches other instances a
// few milliseconds after commit, so without more a request sent to another instance right after a
// disable could still be served from that instance's cache. Each change therefore carries a
// sequence number; every other instance confirms (one NOTIFY, batched) once it has dropped what
// the change touched, and the writer replies only when every instance it knows of has confirmed,
// or after the lease: an instance trusts its cache only for `leaseMs` after its last proof that it
// hears notifications, so one that never confirms has stopped serving from cache by then.
export const PRESENCE_CHANNEL = 'keyward_instances';
/**
 * Each instance hears confirmations on a channel of its own: every delivery costs the receiving
 * backend a transaction, so one shared channel would cost N × (N − 1) per change, this N − 1.
 */
export function ackChannelOf(instanceId: string): string {
  return `keyward_acks_${instanceId.replace(/[^0-9a-z]/gi, '').toLowerCase().slice(0, 40)}`;
}

/** NOTIFY payloads must stay under 8000 bytes. */
const MAX_PAYLOAD = 7_800;

let lastSeq = 0;
/** A change's number, unique per process (a writer is named by its random instance id as well). */
export function nextChangeSeq(): number {
  return ++lastSeq;
}

interface Waiter {
  pending: Map<number, Set<string>>;
  resolve: () => void;
  timer: NodeJS.Timeout;
}

export function createPeerAcks(opts: {
  instanceId: string;
  leaseMs: number;
  /** Sends a NOTIFY through the pool (where changes are sent). */
  send: (channel: string, payload: string) => Promise<void>;
  log: { warn(obj: object, msg: string): void; debug?(obj: object, msg: string): void };
  now?: () => number;
}) {
  const now = opts.now ?? Date.now;
  const peers = new Map<string, number>(); // instance id → when it last proved it listens
  const waiters = new Set<Waiter>();
  const outgoing = new Map<string, number[]>(); // writer → seqs this instance has applied
  // Confirmations can arrive before the writer starts waiting (its commit reaches the others as
  // soon as itself): kept for a lease, oldest first.
  const early = new Map<number, { at: number; from: Set<string> }>();
  let flushing = false;
  let timeouts = 0;

  function livePeers(): string[] {
    const since = now() - opts.leaseMs;
    const live: string[] = [];
    for (const [id, at] of peers) {
      if (at >= since) live.push(id);
      else peers.delete(id);
    }
    return live;
  }

  function flush() {
    flushing = false;
    for (const [writer, seqs] of outgoing) {
      outgoing.delete(writer);
      const head = `${opts.instanceId} `;
      let chunk: string[] = [];
      let size = head.length;
      const send = () => {
        if (!chunk.length) return;
        const payload = head + chunk.join(',');
        chunk = [];
        size = head.length;
        opts.send(ackChannelOf(writer), payload).catch((err) => opts.log.debug?.({ err }, 'could not confirm a key change'));
      };
      for (const seq of seqs) {
        const s = String(seq);
        if (size + s.length + 1 > MAX_PAYLOAD) send();
        chunk.push(s);
        size += s.length + 1;
      }
      send();
    }
  }

  return {
    /** A peer proved it listens (its presence probe), or said goodbye. */
    seen(peer: string) {
      if (peer !== opts.instanceId) peers.set(peer, now());
    },
    gone(peer: string) {
      peers.delete(peer);
      this.caughtUp(peer);
    },
    /**
     * The peer's first proof after (re)connecting: it emptied its cache when it lost the
     * connection and has cached nothing since, so no change committed before owes a confirmation
     * from it (later ones it hears, as it LISTENed before this proof).
     */
    caughtUp(peer: string) {
      for (const w of waiters) {
        for (const [seq, from] of w.pending) {
          from.delete(peer);
          if (!from.size) w.pending.delete(seq);
        }
        if (!w.pending.size) w.resolve();
      }
    },
    /** This instance has applied `seq` from `writer`: confirm it (batched with others). */
    applied(writer: string, seq: number) {
      let list = outgoing.get(writer);
      if (!list) outgoing.set(writer, (list = []));
      list.push(seq);
      if (!flushing) {
        flushing = true;
        setImmediate(flush);
      }
    },
    /** A payload on this instance's ackChannelOf(): `<from> <seq>,<seq>…`. */
    received(payload: string) {
      const [from, list] = payload.split(' ');
      if (!from || !list) return;
      const at = now();
      for (const [seq, e] of early) {
        if (e.at >= at - opts.leaseMs) break;
        early.delete(seq);
      }
      for (const s of list.split(',')) {
        const seq = Number(s);
        let e = early.get(seq);
        if (!e) early.set(seq, (e = { at, from: new Set() }));
        e.from.add(from);
        for (const w of waiters) {
          const set = w.pending.get(seq);
          if (!set?.delete(from)) continue;
          if (!set.size) w.pending.delete(seq);
          if (!w.pending.size) w.resolve();
        }
      }
    },
    /** Resolves once every live peer confirmed every seq, or after the lease (never rejects). */
    wait(seqs: number[]): Promise<void> {
      const live = livePeers();
      if (!live.length || !seqs.length) return Promise.resolve();
      const pending = new Map<number, Set<string>>();
      for (const seq of seqs) {
        const done = early.get(seq)?.from;
        const from = new Set(live.filter((p) => !done?.has(p)));
        if (from.size) pending.set(seq, from);
      }
      if (!pending.size) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const w: Waiter = {
          pending,
          resolve: () => {
            clearTimeout(w.timer);
            waiters.delete(w);
            resolve();
          },
          timer: setTimeout(() => {
            timeouts++;
            const silent = [...new Set([...w.pending.values()].flatMap((s) => [...s]))];
            opts.log.warn({ instances: silent, changes: seqs.length }, 'instances did not confirm a key change within the lease; their caches have stopped serving by now');
            w.resolve();
          }, opts.leaseMs + 100),
        };
        waiters.add(w);
      });
    },
    stats() {
      return { peers: livePeers().length, waiting: waiters.size, timeouts };
    },
    stop() {
      for (const w of waiters) w.resolve();
    },
  };
}

export type PeerAcks = ReturnType<typeof createPeerAcks>;
