// Debian's nginx running deploy/nginx.conf — the compose cluster profile's proxy — in front of
// local processes: the file as committed, with Docker's DNS taken out and addresses substituted.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, portAnswers, ROOT } from './server-process.js';

export function findNginx(): { path: string } | { missing: string } {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) if (existsSync(p)) return { path: p };
  const which = spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' }).stdout.trim();
  if (which) return { path: which };
  return { missing: 'nginx is not installed (Debian package nginx-light or nginx; .ci/run installs it with apt-get)' };
}

/** deploy/nginx.conf with `app-a`, `app-b`, … replaced by the given local ports, listening on `listenPort`. */
export function substitute(conf: string, upstreamPorts: number[], listenPort: number): string {
  const letters = 'abcdefghij';
  const out = conf
    .replace(/^resolver .*;\n/m, '')
    .replace(/server app-([a-j]):3000 resolve /g, (_, letter: string) => {
      const port = upstreamPorts[letters.indexOf(letter)];
      if (port === undefined) throw new Error(`deploy/nginx.conf names app-${letter}: more replicas than the test started`);
      return `server 127.0.0.1:${port} `;
    })
    .replace(/^(\s*)listen 8080;/m, `$1listen 127.0.0.1:${listenPort};`);
  const servers = out.match(/server 127\.0\.0\.1:\d+ /g) ?? [];
  if (servers.length !== upstreamPorts.length) throw new Error(`deploy/nginx.conf has ${servers.length} replicas, the test started ${upstreamPorts.length}`);
  const directives = out.replace(/#.*$/gm, '');
  if (/resolve\b|app-[a-z]/.test(directives)) throw new Error('deploy/nginx.conf has a form the substitution does not know');
  return out;
}

export interface Nginx {
  port: number;
  url: string;
  /** The access log: `<upstream addresses> <status> <method> <uri>` per request. */
  accessLog(): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startNginx(binary: string, upstreamPorts: number[]): Promise<Nginx> {
  const dir = await mkdtemp(path.join(tmpdir(), 'keyward-nginx-'));
  const port = await freePort();
  const site = substitute(await readFile(path.join(ROOT, 'deploy/nginx.conf'), 'utf8'), upstreamPorts, port);
  await writeFile(path.join(dir, 'site.conf'), site, { mode: 0o600 });
  const log = path.join(dir, 'access.log');
  // As root the workers would switch to `nobody`, who cannot enter this private folder.
  const asRoot = process.getuid?.() === 0;
  const main = [
    ...(asRoot ? ['user root;'] : []),
    'daemon off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 1024; }',
    'http {',
    `  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;`,
    `  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
    `  log_format upstreams '$upstream_addr $status $request_method $request_uri';`,
    `  access_log ${log} upstreams;`,
    `  include ${dir}/site.conf;`,
    '}',
    '',
  ].join('\n');
  await writeFile(path.join(dir, 'nginx.conf'), main, { mode: 0o600 });
  const child: ChildProcess = spawn(binary, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const started = Date.now();
  while (!(await portAnswers(port))) {
    if (child.exitCode !== null || Date.now() - started > 10_000) {
      child.kill('SIGKILL');
      const errors = await readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
      await rm(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start:\n${out}\n${errors}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    accessLog: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
