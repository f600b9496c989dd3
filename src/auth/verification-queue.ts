// The queue argon2 work waits in: at most `concurrency` verifications run at once and at most
// `queue` wait; beyond that the caller is told to come back (503 OVERLOADED) instead of queueing
// without limit, so a flood of wrong secrets cannot starve requests with cached keys.
import { overloaded } from '../lib/errors.js';

export function createVerificationQueue(concurrency: number, queue: number) {
  let running = 0;
  const waiting: Array<() => void> = [];
  return {
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (running >= concurrency) {
        if (waiting.length >= queue) throw overloaded();
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else {
        running++;
      }
      try {
        return await task();
      } finally {
        const next = waiting.shift();
        if (next) next();
        else running--;
      }
    },
    /** Runs `task` only if a slot is free right now (no queueing); otherwise returns undefined. */
    async tryRun<T>(task: () => Promise<T>): Promise<T | undefined> {
      if (running >= concurrency) return undefined;
      return this.run(task);
    },
    get running() {
      return running;
    },
    get waiting() {
      return waiting.length;
    },
  };
}

export type VerificationQueue = ReturnType<typeof createVerificationQueue>;
