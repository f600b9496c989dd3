// The container's HEALTHCHECK: GET /api/v1/health on this server's own port, exit 0 when it
// answers 200. Reads the same configuration as the server, so PORT and TLS are followed.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { loadConfig } from './config.js';

const TIMEOUT_MS = 4_000;

function loopbackFor(host: string): string {
  // A wildcard bind answers on loopback; a specific address must be asked on that address.
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host;
}

function check(): Promise<number> {
  const config = loadConfig(process.env);
  const request = config.tls ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const req = request(
      {
        host: loopbackFor(config.host),
        port: config.port,
        path: '/api/v1/health',
        method: 'GET',
        timeout: TIMEOUT_MS,
        // Liveness of our own process, not the certificate's identity (its name is not "localhost").
        rejectUnauthorized: false,
        headers: { 'user-agent': 'keyward-healthcheck' },
      },
      (res) => {
        res.resume();
        // Docker keeps this output with the health state (docker inspect).
        process.stdout.write(`health: ${res.statusCode}\n`);
        resolve(res.statusCode === 200 ? 0 : 1);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err) => {
      process.stdout.write(`health: ${err.message}\n`);
      resolve(1);
    });
    req.end();
  });
}

check().then(
  (code) => process.exit(code),
  () => process.exit(1),
);
