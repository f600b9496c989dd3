// The queue argon2 work waits in, in three lanes:
//   clean   — the prefix has no recent failures and the address none either: served first;
//   address — the prefix is clean but the address has failed recently (a new key behind a NAT
//             an attacker shares);
//   prefix  — the prefix has recent failures: most of these are guesses.
// At most `concurrency` verifications run at once. The two suspect lanes (address before prefix)
// run only when no clean verification waits, and together they may use at most `suspectShare` of
// the argon2 slots' time (a token bucket in milliseconds of argon2 actually spent), however many
// prefixes and addresses a flood is spread over. The clean lane holds at most `queue` waiters,
// beyond which it is told to come back (503 OVERLOADED); the suspect lanes together hold
// `suspectQueue`, beyond which an attempt is refused unverified (SuspectRefused: answered like a wrong secret), an
// address-lane one first taking the place of the newest prefix-lane waiter.
import { overloaded } from '../lib/errors.js';

export type Lane = 'clean' | 'address' | 'prefix';

/** A verification of a prefix under attack that was not run: the suspect lanes are full. */
export class SuspectRefused extends Error {
  constructor() {
    super('suspect verification refused: its lane is full');
  }
}

interface Waiter {
  start: () => void;
  refuse: (err: Error) => void;
}

export interface VerificationQueueOptions {
  concurrency: number;
  queue: number;
  /** Share (0–1] of the argon2 slots' time that suspect lanes may use. */
  suspectShare?: number;
  /** Waiters the two suspect lanes hold together (default: `queue`). */
  suspectQueue?: number;
  now?: () => number;
}

export function createVerificationQueue(opts: VerificationQueueOptions) {
  const { concurrency, queue } = opts;
  const suspectQueue = opts.suspectQueue ?? queue;
  const share = opts.suspectShare ?? 1;
  const now = opts.now ?? (() => performance.now());
  /** argon2 milliseconds suspects may spend per millisecond. */
  const rate = share * concurrency;
  /** At most this much unspent allowance builds up while no flood runs (one second's worth). */
  const capacity = Math.max(1, rate * 1000);
  const suspectSlots = Math.max(1, Math.floor(rate));
  let tokens = capacity;
  let refilledAt = now();
  let running = 0;
  let suspectsRunning = 0;
  let suspectRuns = 0;
  let runs = 0;
  let timer: NodeJS.Timeout | undefined;
  const lanes: Record<Lane, Waiter[]> = { clean: [], address: [], prefix: [] };

  function refill() {
    const at = now();
    tokens = Math.min(capacity, tokens + (at - refilledAt) * rate);
    refilledAt = at;
    return tokens;
  }

  const suspectsWaiting = () => lanes.address.length + lanes.prefix.length;
  const suspectMayStart = () => suspectsRunning < suspectSlots && refill() > 0;

  /** Starts what may start now; when suspects wait only for allowance, wakes up when there is some. */
  function pump() {
    while (running < concurrency) {
      const clean = lanes.clean.shift();
      // The slot is taken here, synchronously, so this loop never starts more than there are.
      if (clean) {
        running++;
        clean.start();
        continue;
      }
      if (!suspectsWaiting() || !suspectMayStart()) break;
      running++;
      suspectsRunning++;
      (lanes.address.shift() ?? lanes.prefix.shift())!.start();
    }
    if (suspectsWaiting() && running < concurrency && timer === undefined && suspectsRunning < suspectSlots) {
      timer = setTimeout(
        () => {
          timer = undefined;
          pump();
        },
        Math.max(1, Math.ceil(-tokens / rate) + 1),
      );
      timer.unref();
    }
  }

  /** Runs `task` in a slot (taken here unless pump() already took it for a waiter). */
  async function execute<T>(task: () => Promise<T>, suspect: boolean, slotTaken = false): Promise<T> {
    if (!slotTaken) {
      running++;
      if (suspect) suspectsRunning++;
    }
    runs++;
    if (suspect) suspectRuns++;
    const started = now();
    try {
      return await task();
    } finally {
      running--;
      if (suspect) {
        suspectsRunning--;
        refill();
        tokens -= now() - started;
      }
      pump();
    }
  }

  function wait(lane: Lane): Promise<void> {
    return new Promise<void>((start, refuse) => lanes[lane].push({ start, refuse }));
  }

  return {
    /** Runs `task` in `lane` (clean unless told otherwise) when its turn comes. */
    async run<T>(task: () => Promise<T>, lane: Lane = 'clean'): Promise<T> {
      const suspect = lane !== 'clean';
      if (!suspect) {
        if (running < concurrency) return execute(task, false);
        if (lanes.clean.length >= queue) throw overloaded();
      } else {
        if (running < concurrency && !suspectsWaiting() && !lanes.clean.length && suspectMayStart()) return execute(task, true);
        if (suspectsWaiting() >= suspectQueue) {
          const dropped = lane === 'address' ? lanes.prefix.pop() : undefined;
          if (!dropped) throw new SuspectRefused();
          dropped.refuse(new SuspectRefused());
        }
      }
      const waiting = wait(lane);
      pump();
      await waiting;
      return execute(task, suspect, true);
    },
    /** Runs `task` only if a slot is free right now and nothing waits (no queueing); otherwise returns undefined. */
    async tryRun<T>(task: () => Promise<T>): Promise<T | undefined> {
      if (running >= concurrency || lanes.clean.length || suspectsWaiting()) return undefined;
      return execute(task, false);
    },
    get running() {
      return running;
    },
    get waiting() {
      return lanes.clean.length + suspectsWaiting();
    },
    /** Tasks run since start (verifications, and the rare rehash). */
    get runs() {
      return runs;
    },
    /** Verifications run in a suspect lane since start. */
    get suspectRuns() {
      return suspectRuns;
    },
  };
}

export type VerificationQueue = ReturnType<typeof createVerificationQueue>;
