// Runs the orders API: node --import tsx examples/orders-api/server.ts
//   KEYWARD_URL      keyward's base URL (required), e.g. http://127.0.0.1:3000
//   KEYWARD_API_KEY  a keyward key holding apikeys.verify (required)
//   PORT             default 3100
//   HOST             default 127.0.0.1
// Prints `listening on http://HOST:PORT` on stdout once it accepts requests; keyward's stream
// state goes to stderr. SIGTERM or SIGINT closes the server and the verifier, and it exits.
import { createVerifier } from '@keyward/verify';
import { buildOrdersApi } from './app.js';

const url = process.env.KEYWARD_URL;
const apiKey = process.env.KEYWARD_API_KEY;
if (!url || !apiKey) {
  console.error('orders-api: set KEYWARD_URL and KEYWARD_API_KEY (a key holding apikeys.verify)');
  process.exit(2);
}
const port = Number(process.env.PORT ?? 3100);
const host = process.env.HOST ?? '127.0.0.1';

const verifier = createVerifier({
  url,
  apiKey,
  onStreamState: ({ live, reason }) => console.error(`orders-api: keyward event stream ${live ? 'live' : `lost (${reason})`}`),
});
const app = await buildOrdersApi(verifier);

let stopping = false;
async function stop(signal: string) {
  if (stopping) return;
  stopping = true;
  console.error(`orders-api: ${signal}, closing`);
  // A safety net only: the close below normally takes well under a second.
  setTimeout(() => process.exit(1), 10_000).unref();
  // The stream first: nothing new is cached while in-flight requests finish.
  verifier.close();
  await app.close();
  // Exit now rather than when the last idle keep-alive socket to keyward times out.
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));

try {
  await app.listen({ port, host });
} catch (err) {
  console.error(`orders-api: cannot listen on ${host}:${port}: ${(err as Error).message}`);
  verifier.close();
  process.exit(1);
}
const address = app.server.address();
const shown = typeof address === 'object' && address ? address.port : port;
console.log(`listening on http://${host.includes(':') ? `[${host}]` : host}:${shown}`);
