// A load of distinct wrong secrets for one real key prefix, at full speed, so the negative cache
// cannot absorb them. Run by bench/run.ts as its own process:
//   node --import tsx bench/flood.ts <url> <prefix> <seconds> <concurrency>
// Prints {"sent":…, "byStatus":{…}} when done.
import { randomBytes } from 'node:crypto';
import http from 'node:http';

const [url, prefix, seconds, concurrency] = process.argv.slice(2);
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) });
const until = Date.now() + Number(seconds) * 1000;
const byStatus: Record<string, number> = {};
let sent = 0;

function once(): Promise<void> {
  const key = prefix + randomBytes(32).toString('hex').slice(0, 71 - prefix.length);
  return new Promise((resolve) => {
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname, agent, headers: { 'x-api-key': key } },
      (res) => {
        res.resume();
        res.on('end', () => {
          byStatus[res.statusCode ?? 0] = (byStatus[res.statusCode ?? 0] ?? 0) + 1;
          resolve();
        });
      },
    );
    req.on('error', () => {
      byStatus.error = (byStatus.error ?? 0) + 1;
      resolve();
    });
    req.end();
    sent++;
  });
}

async function loop() {
  while (Date.now() < until) await once();
}

await Promise.all(Array.from({ length: Number(concurrency) }, loop));
agent.destroy();
process.stdout.write(`${JSON.stringify({ sent, byStatus })}\n`);
