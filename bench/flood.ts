// A load of distinct wrong secrets for real key prefixes, at full speed (each connection sends
// its next request as soon as the last is answered), so the negative cache cannot absorb them.
// Run by bench/run.ts as its own process:
//   node --import tsx bench/flood.ts <url> <prefixes-file> <seconds> <concurrency> <addresses>
// The prefixes file holds one prefix per line; requests cycle through them. With <addresses>
// > 0 each request carries X-Forwarded-For from that many client addresses (half IPv4, half
// IPv6 /64s), so the server must trust the load generator as its proxy. Prints
// {"sent":…, "seconds":…, "byStatus":{…}} when done.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

const [url, prefixesFile, seconds, concurrency, addressCount] = process.argv.slice(2);
const target = new URL(url);
const prefixes = readFileSync(prefixesFile, 'utf8').split('\n').filter(Boolean);
const addresses = Array.from({ length: Number(addressCount) }, (_, i) =>
  i % 2 ? `2001:db8:${(i >> 8).toString(16)}:${(i & 0xff).toString(16)}::${(i % 7) + 1}` : `198.18.${i >> 8}.${i & 0xff}`,
);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) });
const started = Date.now();
const until = started + Number(seconds) * 1000;
const byStatus: Record<string, number> = {};
let sent = 0;

function once(): Promise<void> {
  const n = sent++;
  const prefix = prefixes[n % prefixes.length];
  const key = prefix + randomBytes(32).toString('hex').slice(0, 71 - prefix.length);
  const headers: Record<string, string> = { 'x-api-key': key };
  if (addresses.length) headers['x-forwarded-for'] = addresses[n % addresses.length];
  return new Promise((resolve) => {
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => {
        byStatus[res.statusCode ?? 0] = (byStatus[res.statusCode ?? 0] ?? 0) + 1;
        resolve();
      });
    });
    req.on('error', () => {
      byStatus.error = (byStatus.error ?? 0) + 1;
      resolve();
    });
    req.end();
  });
}

async function loop() {
  while (Date.now() < until) await once();
}

await Promise.all(Array.from({ length: Number(concurrency) }, loop));
agent.destroy();
process.stdout.write(`${JSON.stringify({ sent, seconds: (Date.now() - started) / 1000, byStatus })}\n`);
