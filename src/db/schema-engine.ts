// Prisma's schema engine compiled to WebAssembly, driven through the pg driver adapter.
// This is what lets migrations be applied and created on machines that reach only the npm
// registry: the Prisma CLI would download a native engine from Prisma's own host.
// It writes the standard `_prisma_migrations` table, so the ordinary
// `prisma migrate deploy` agrees with it.
import { randomUUID } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import {
  bindMigrationAwareSqlAdapterFactory,
  type ErrorRegistry,
  type SqlMigrationAwareDriverAdapterFactory,
} from '@prisma/driver-adapter-utils';
import pg from 'pg';
import type * as Wasm from '@prisma/schema-engine-wasm';
import { pgConfigFromUrl } from './pg-config.js';

const require = createRequire(import.meta.url);

type SchemaEngine = Wasm.SchemaEngine;
type MigrationList = Wasm.MigrationList;

export interface SchemaEngineLog {
  debug(msg: string): void;
}

// Node has WebAssembly; TypeScript's declarations for it live in the DOM lib, which we do not load.
const wasmRuntime = (globalThis as unknown as {
  WebAssembly: { instantiate(b: Uint8Array, i: object): Promise<{ instance: { exports: Record<string, unknown> } }> };
}).WebAssembly;

let wasmModule: Promise<typeof Wasm> | undefined;

/** Instantiates the engine's wasm by hand: Node 20 cannot import `.wasm` as an ES module. */
function loadWasm(): Promise<typeof Wasm> {
  wasmModule ??= (async () => {
    const bgPath = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg');
    const bg = (await import(bgPath)) as typeof Wasm & Record<string, unknown>;
    const imports: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(bg)) {
      // The engine arms 10 s timers; unref them so a CLI run exits when its work is done.
      imports[name] =
        name.startsWith('__wbg_setTimeout') && typeof value === 'function'
          ? (...args: unknown[]) => {
              const timer = (value as (...a: unknown[]) => NodeJS.Timeout)(...args);
              timer?.unref?.();
              return timer;
            }
          : value;
    }
    const bytes = await readFile(path.join(path.dirname(bgPath), 'schema_engine_bg.wasm'));
    const { instance } = await wasmRuntime.instantiate(bytes, { './schema_engine_bg.js': imports });
    (bg as unknown as { __wbg_set_wasm(w: unknown): void }).__wbg_set_wasm(instance.exports);
    (instance.exports as { __wbindgen_start?: () => void }).__wbindgen_start?.();
    return bg;
  })();
  return wasmModule;
}


const PG_CHAR_OID = 18;
const PG_TEXT_OID = 25;

type Queryable = { performIO(query: unknown): Promise<{ fields: Array<{ dataTypeID: number }> }> };

/**
 * The engine's catalogue queries return PostgreSQL's internal one-byte `"char"` type
 * (pg_class.relkind and friends), which the pg adapter cannot map ("Column type 'char' could
 * not be deserialized"). pg already hands those values over as strings, so report them as text.
 * Also fixes how scripts run (below). Scoped to the engine's own connections; the app's Prisma
 * client is untouched.
 */
function withCharAsText<T extends object>(adapter: T): T {
  const q = adapter as unknown as Queryable & {
    startTransaction?: (...a: unknown[]) => Promise<object>;
    executeScript?: (script: string) => Promise<void>;
    client?: { query(sql: string): Promise<unknown> };
    onError?: (err: unknown) => never;
  };
  const performIO = q.performIO.bind(q);
  q.performIO = async (query) => {
    const result = await performIO(query);
    for (const field of result.fields ?? []) if (field.dataTypeID === PG_CHAR_OID) field.dataTypeID = PG_TEXT_OID;
    return result;
  };
  // The adapter splits a migration script on every ";" — inside comments, string literals and
  // dollar-quoted function bodies too. PostgreSQL runs a multi-statement script sent as one
  // simple query itself (as one transaction), which is what the native engine does.
  if (q.executeScript && q.client) {
    q.executeScript = async (script: string) => {
      try {
        await q.client!.query(script);
      } catch (err) {
        q.onError!(err);
      }
    };
  }
  if (q.startTransaction) {
    const start = q.startTransaction.bind(q);
    q.startTransaction = async (...args) => withCharAsText(await start(...args));
  }
  return adapter;
}

/**
 * The pg adapter's own shadow database drops the database while its pool still holds a
 * connection (PostgreSQL refuses: "being accessed by other users") and leaks the admin pool.
 * This one closes the shadow pool first and drops with FORCE.
 */
function shadowSafeFactory(
  config: ReturnType<typeof pgConfigFromUrl>,
  opened: Array<{ dispose(): Promise<void> }>,
): SqlMigrationAwareDriverAdapterFactory {
  const main = new PrismaPg(config);
  return {
    provider: main.provider,
    adapterName: main.adapterName,
    connect: async () => {
      const adapter = withCharAsText(await main.connect());
      opened.push(adapter);
      return adapter;
    },
    async connectToShadowDb() {
      const admin = new pg.Client(config);
      await admin.connect();
      const database = `prisma_migrate_shadow_db_${randomUUID()}`;
      try {
        await admin.query(`CREATE DATABASE "${database}"`);
        const shadow = withCharAsText(await new PrismaPg({ ...config, database }).connect());
        const dispose = shadow.dispose.bind(shadow);
        shadow.dispose = async () => {
          await dispose();
          await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
          await admin.end();
        };
        return shadow;
      } catch (err) {
        await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => {});
        await admin.end().catch(() => {});
        throw err;
      }
    },
  };
}

export async function withSchemaEngine<T>(
  databaseUrl: string,
  schemaFiles: Array<[string, string]> | undefined,
  log: SchemaEngineLog,
  fn: (engine: SchemaEngine) => Promise<T>,
): Promise<T> {
  const wasm = await loadWasm();
  // The engine does not dispose the connections it opens; we do, or their pools keep Node alive.
  const opened: Array<{ dispose(): Promise<void> }> = [];
  const adapter = bindMigrationAwareSqlAdapterFactory(shadowSafeFactory(pgConfigFromUrl(databaseUrl), opened));
  let engine: SchemaEngine;
  try {
    engine = await wasm.SchemaEngine.new(
      { datamodels: schemaFiles },
      (msg: string) => log.debug(`schema-engine: ${msg}`),
      adapter,
    );
  } catch (err) {
    await Promise.allSettled(opened.map((a) => a.dispose()));
    throw unwrapEngineError(adapter.errorRegistry, err);
  }
  try {
    return await fn(engine);
  } catch (err) {
    throw unwrapEngineError(adapter.errorRegistry, err);
  } finally {
    engine.free();
    await Promise.allSettled(opened.map((a) => a.dispose()));
  }
}

/** Errors raised inside the driver adapter come back from the engine as registry ids. */
function unwrapEngineError(registry: ErrorRegistry, err: unknown): unknown {
  const id = (err as { cause?: { id?: unknown }; id?: unknown })?.id ?? (err as { cause?: { id?: unknown } })?.cause?.id;
  if (typeof id === 'number') {
    const record = registry.consumeError(id);
    if (record) return record.error;
  }
  return err;
}

export async function loadMigrationList(migrationsDir: string): Promise<MigrationList> {
  const baseDir = path.resolve(migrationsDir);
  const entries = await readdir(baseDir, { withFileTypes: true }).catch(() => []);
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const migrationDirectories = await Promise.all(
    dirs.map(async (dir) => {
      const file = path.join(baseDir, dir, 'migration.sql');
      const content = await readFile(file, 'utf8').then(
        (value) => ({ tag: 'ok' as const, value }),
        (err: Error) => ({ tag: 'error' as const, value: err.message }),
      );
      return { path: dir, migrationFile: { path: 'migration.sql', content } };
    }),
  );
  const lockPath = path.join(baseDir, 'migration_lock.toml');
  const lockContent = await stat(lockPath).then(
    () => readFile(lockPath, 'utf8'),
    () => null,
  );
  return {
    baseDir,
    lockfile: { path: 'migration_lock.toml', content: lockContent },
    shadowDbInitScript: '',
    migrationDirectories,
  } as MigrationList;
}

export async function loadSchemaFiles(schemaPath: string): Promise<Array<[string, string]>> {
  return [[path.resolve(schemaPath), await readFile(schemaPath, 'utf8')]];
}
