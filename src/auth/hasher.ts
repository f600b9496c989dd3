import argon2 from 'argon2';
import type { Config } from '../config.js';
import { NO_METRICS, type Metrics } from '../lib/metrics.js';

export interface KeyHasher {
  hash(secret: string): Promise<string>;
  verify(hash: string, secret: string): Promise<boolean>;
  /** True when the hash was made with other parameters than the configured ones. */
  needsRehash(hash: string): boolean;
}

export function createKeyHasher(params: Pick<Config['argon2'], 'memoryKib' | 'timeCost' | 'parallelism'>): KeyHasher {
  const options = {
    type: argon2.argon2id,
    memoryCost: params.memoryKib,
    timeCost: params.timeCost,
    parallelism: params.parallelism,
  } as const;
  return {
    hash: (secret) => argon2.hash(secret, options),
    async verify(hash, secret) {
      try {
        return await argon2.verify(hash, secret);
      } catch {
        return false; // a corrupt stored hash never authenticates
      }
    },
    needsRehash: (hash) => argon2.needsRehash(hash, options),
  };
}

/** Times hash and verify into the metrics; the hasher itself when metrics are off. */
export function instrumentHasher(hasher: KeyHasher, metrics: Metrics): KeyHasher {
  if (metrics === NO_METRICS) return hasher;
  const timed = async <T>(op: 'hash' | 'verify', work: () => Promise<T>): Promise<T> => {
    const start = process.hrtime.bigint();
    try {
      return await work();
    } finally {
      metrics.argon2(op, Number(process.hrtime.bigint() - start) / 1e9);
    }
  };
  return {
    hash: (secret) => timed('hash', () => hasher.hash(secret)),
    verify: (hash, secret) => timed('verify', () => hasher.verify(hash, secret)),
    needsRehash: (hash) => hasher.needsRehash(hash),
  };
}
