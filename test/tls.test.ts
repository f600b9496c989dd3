// HTTPS straight from the server (TLS_CERT_FILE, TLS_KEY_FILE), with a self-signed certificate
// made here; and the container HEALTHCHECK following the same settings.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { connect } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, testConfig, TEST_ENV } from './helpers/app.js';
import { ADMIN, seedKey } from './helpers/keys.js';
import { ROOT } from './helpers/server-process.js';

let dir: string;
const files = { cert: '', key: '', otherKey: '', garbage: '' };

async function selfSigned() {
  return generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
  });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'keyward-tls-'));
  const [a, b] = await Promise.all([selfSigned(), selfSigned()]);
  files.cert = path.join(dir, 'cert.pem');
  files.key = path.join(dir, 'key.pem');
  files.otherKey = path.join(dir, 'other-key.pem');
  files.garbage = path.join(dir, 'garbage.pem');
  await writeFile(files.cert, a.cert);
  await writeFile(files.key, a.private, { mode: 0o600 });
  await writeFile(files.otherKey, b.private, { mode: 0o600 });
  await writeFile(files.garbage, 'not a certificate\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function get(port: number, urlPath: string, opts: { ca?: string; headers?: Record<string, string> } = {}) {
  return new Promise<{ status: number; body: string; peerCN: string; protocol: string | null }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: urlPath, ca: opts.ca, servername: 'localhost', headers: opts.headers }, (res) => {
      let body = '';
      const socket = res.socket as import('node:tls').TLSSocket;
      const peerCN = String(socket.getPeerCertificate().subject?.CN ?? '');
      const protocol = socket.getProtocol();
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, peerCN, protocol }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS', () => {
  it('serves HTTPS with the configured certificate; plain HTTP to that port gets no API', async () => {
    const ca = await readFile(files.cert, 'utf8');
    const app = await buildTestApp({ env: { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.key } });
    const admin = await seedKey(app, { roleIds: [ADMIN] });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;

    const health = await get(port, '/api/v1/health', { ca });
    expect(health).toMatchObject({ status: 200, peerCN: 'localhost' });
    expect(JSON.parse(health.body)).toEqual({ status: 'healthy', database: 'ok' });
    expect(health.protocol).toMatch(/^TLSv1\.[23]$/);
    const me = await get(port, '/api/v1/userinfo', { ca, headers: admin.headers });
    expect(me.status).toBe(200);
    expect(JSON.parse(me.body).id).toBe(admin.id);

    // An unknown CA is refused by a verifying client: the certificate really is the one served.
    await expect(get(port, '/api/v1/health')).rejects.toThrow(/self-signed|self signed/);
    // Cleartext to the TLS port never reaches a route.
    const plain = await fetch(`http://127.0.0.1:${port}/api/v1/health`).then(
      (r) => r.status,
      () => 'refused',
    );
    expect(plain).not.toBe(200);

    // The container HEALTHCHECK follows TLS_* and PORT.
    const env = { ...TEST_ENV, PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(port), TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.key };
    // Asynchronously: the server runs in this process, so a blocking spawn would starve it.
    const probe = () =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/healthcheck.ts'], { cwd: ROOT, env, stdio: 'ignore' });
        child.on('exit', (code) => resolve(code));
      });
    expect(await probe()).toBe(0);
    await app.close();
    expect(await probe()).toBe(1);
  });

  it('enforces REQUEST_TIMEOUT_MS over TLS too: headers that never finish get a 408 problem', async () => {
    const ca = await readFile(files.cert, 'utf8');
    const app = await buildTestApp({ env: { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.key, REQUEST_TIMEOUT_MS: '1000' } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const started = Date.now();
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => socket.write('GET /api/v1/health HTTP/1.1\r\nHost: x\r\n'));
      let data = '';
      socket.on('data', (d) => (data += d));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(reply).toContain('"code":"REQUEST_TIMEOUT"');
    // Node's default check interval is 30 s; the configured one answers within a few seconds.
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('refuses to start on a missing half, an unreadable file, or a key that does not match the certificate', () => {
    expect(() => testConfig({ TLS_CERT_FILE: files.cert })).toThrow(/TLS_KEY_FILE: required when TLS_CERT_FILE is set/);
    expect(() => testConfig({ TLS_KEY_FILE: files.key })).toThrow(/TLS_CERT_FILE: required when TLS_KEY_FILE is set/);
    expect(() => testConfig({ TLS_CERT_FILE: path.join(dir, 'absent.pem'), TLS_KEY_FILE: files.key })).toThrow(/TLS_CERT_FILE: cannot read .*absent\.pem \(ENOENT\)/);
    expect(() => testConfig({ TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.otherKey })).toThrow(/not a PEM certificate and its matching private key/);
    expect(() => testConfig({ TLS_CERT_FILE: files.garbage, TLS_KEY_FILE: files.key })).toThrow(/not a PEM certificate and its matching private key/);
  });
});
