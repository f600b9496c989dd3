// npm run bench:argon2 — median argon2id hash and verify time with the configured parameters
// (ARGON2_* variables, default m=19456 KiB, t=2, p=1) on this machine.
import { createKeyHasher } from '../src/auth/hasher.js';
import { generateKey } from '../src/auth/key-format.js';
import { loadConfig } from '../src/config.js';

const RUNS = 20;
const { argon2 } = loadConfig(process.env);
const hasher = createKeyHasher(argon2);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const hashes: number[] = [];
const verifies: number[] = [];
const key = generateKey();
await hasher.hash(key); // warm-up
for (let i = 0; i < RUNS; i++) {
  let t = performance.now();
  const hash = await hasher.hash(key);
  hashes.push(performance.now() - t);
  t = performance.now();
  if (!(await hasher.verify(hash, key))) throw new Error('verify failed');
  verifies.push(performance.now() - t);
}
console.log(
  `argon2id m=${argon2.memoryKib} KiB t=${argon2.timeCost} p=${argon2.parallelism}: ` +
    `hash median ${median(hashes).toFixed(1)} ms, verify median ${median(verifies).toFixed(1)} ms (${RUNS} runs)`,
);
