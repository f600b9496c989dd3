// What the rate-limit and flood tests share: a hasher that counts (and can hold) verifications,
// and whether the Redis the shared-budget tests need is there.
import net from 'node:net';
import { createKeyHasher, type KeyHasher } from '../../src/auth/hasher.js';

/** A real (cheap) hasher that counts verifications, and can hold them until released. */
export function countingHasher() {
  const real = createKeyHasher({ memoryKib: 1024, timeCost: 1, parallelism: 1 });
  let n = 0;
  let gate: Promise<void> | null = null;
  const hasher: KeyHasher = {
    ...real,
    async verify(h, s) {
      n++;
      if (gate) await gate;
      return real.verify(h, s);
    },
  };
  return {
    hasher,
    verifies: () => n,
    /** Holds every verification that starts from now until the returned function is called. */
    hold() {
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      return () => {
        gate = null;
        open();
      };
    },
  };
}

/** Whether a Redis answers at 127.0.0.1:6379 (the shared-budget tests are skipped, with a line saying so, when not). */
export function redisAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: 6379 });
    s.setTimeout(1_000, () => (s.destroy(), resolve(false)));
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}
