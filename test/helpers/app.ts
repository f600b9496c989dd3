// Builds the real app, on this test file's own database, exactly as server.ts does.
import { Writable } from 'node:stream';
import { afterAll, inject } from 'vitest';
import { buildApp, type App, type BuildOptions } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { AUTHORIZES } from '../../src/plugins/auth.js';
import { createDatabase } from './databases.js';

let fileDb: Promise<{ name: string; url: string; drop(): Promise<void> }> | undefined;
const apps: App[] = [];
const drops: Array<() => Promise<void>> = [];

// Registered when a test file imports this module: every app it built is closed, then every
// database it made is dropped.
afterAll(async () => {
  await Promise.allSettled(apps.map((a) => a.close()));
  for (const drop of drops) await drop().catch(() => {});
});

const cloneTemplate = () => createDatabase(inject('pgAdminUrl'), { template: inject('pgTemplate'), prefix: inject('pgTemplate') });

/** One database per test file, cloned from the migrated template. */
export function testDatabase() {
  if (!fileDb) {
    fileDb = cloneTemplate();
    drops.push(async () => (await fileDb!).drop());
  }
  return fileDb;
}

/** A database of the test's own (cloned from the migrated template), dropped when the file's tests end. */
export async function freshDatabase(): Promise<string> {
  const db = await cloneTemplate();
  drops.push(db.drop);
  return db.url;
}

/**
 * Cheap argon2 parameters keep the suite fast (only NODE_ENV=test accepts them). Rate limits are
 * off unless a test turns them on: most suites send many failing requests from one address.
 */
// No failure delay unless a test asks for one: hundreds of refusals would otherwise each wait 100 ms.
export const TEST_ENV = { NODE_ENV: 'test', LOG_LEVEL: 'silent', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', RATE_LIMIT_ENABLED: 'false', AUTH_FAILURE_DELAY_MS: '0' };

export function testConfig(env: Record<string, string> = {}, databaseUrl?: string): Config {
  return loadConfig({ ...TEST_ENV, DATABASE_URL: databaseUrl, ...env });
}

export interface RegisteredRoute {
  method: string;
  /** As the table of a test writes it: `{id}` for fastify's `:id`. */
  path: string;
  /** It runs `authorize` (what it requires), or undefined. */
  authorizes: string | undefined;
  /** Its schema declares a security requirement (what the document says). */
  declaresSecurity: boolean;
  hidden: boolean;
  handler: unknown;
}

const routesByApp = new WeakMap<App, RegisteredRoute[]>();

/** Every method and path the app registered, as its onRoute hook saw them. */
export function routesOf(app: App): RegisteredRoute[] {
  return routesByApp.get(app) ?? [];
}

export async function buildTestApp(
  opts: { env?: Record<string, string>; logStream?: Writable; databaseUrl?: string; ready?: boolean } & Omit<BuildOptions, 'logStream' | 'onRoute'> = {},
): Promise<App> {
  const url = opts.databaseUrl ?? (await testDatabase()).url;
  const routes: RegisteredRoute[] = [];
  const app = await buildApp(testConfig(opts.env, url), {
    logStream: opts.logStream,
    hasher: opts.hasher,
    clock: opts.clock,
    resolve: opts.resolve,
    onRoute: (route) => {
      const schema = route.schema as { security?: unknown[]; hide?: boolean } | undefined;
      const hooks = [route.onRequest ?? []].flat() as Array<{ [AUTHORIZES]?: string }>;
      const authorizes = hooks.find((h) => h[AUTHORIZES] !== undefined)?.[AUTHORIZES];
      for (const method of [route.method].flat()) {
        routes.push({
          method,
          path: route.url.replace(/:(\w+)/g, '{$1}'),
          authorizes,
          declaresSecurity: (schema?.security?.length ?? 0) > 0,
          hidden: schema?.hide === true,
          handler: route.handler,
        });
      }
    },
  });
  routesByApp.set(app, routes);
  apps.push(app);
  if (opts.ready !== false) await app.ready();
  return app;
}

/** A writable that keeps every log line, parsed. */
export function captureLogs() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { stream, lines, text: () => lines.join('\n'), records: () => lines.map((l) => JSON.parse(l)) };
}
