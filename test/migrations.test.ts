import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { applyMigrations, createMigration, MIGRATIONS_DIR, SCHEMA_PATH } from '../src/db/migrate.js';
import { buildTestApp } from './helpers/app.js';
import { createDatabase } from './helpers/databases.js';

const quiet = { info() {}, debug() {} };
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

async function emptyDatabase() {
  const db = await createDatabase(inject('pgAdminUrl'), { prefix: inject('pgTemplate') });
  cleanups.push(db.drop);
  return db;
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

async function migrationNames(dir = MIGRATIONS_DIR) {
  return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
}

describe('migrations', () => {
  it('apply every migration once, in the standard _prisma_migrations table; a second run is a no-op', async () => {
    const db = await emptyDatabase();
    const names = await migrationNames();
    expect(await applyMigrations(db.url, quiet)).toEqual(names);
    expect(await applyMigrations(db.url, quiet)).toEqual([]);

    const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number; rolled_back_at: Date | null }>(
      db.url,
      'SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM _prisma_migrations ORDER BY migration_name',
    );
    expect(rows.map((r) => r.migration_name)).toEqual(names);
    for (const row of rows) {
      // The checksum the Prisma CLI computes too: sha256 of the file, so both tools agree.
      const sql = await readFile(path.join(MIGRATIONS_DIR, row.migration_name, 'migration.sql'));
      expect(row.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
      expect(row.finished_at).toBeInstanceOf(Date);
      expect(row.rolled_back_at).toBeNull();
      expect(row.applied_steps_count).toBe(1);
    }
  });

  it('seed the built-in roles with fixed ids', async () => {
    const db = await emptyDatabase();
    await applyMigrations(db.url, quiet);
    const roles = await query(db.url, 'SELECT id, name, built_in, permissions FROM roles ORDER BY id');
    expect(roles).toEqual([
      { id: 1, name: 'Administrator', built_in: true, permissions: ['*'] },
      { id: 2, name: 'Operator', built_in: true, permissions: ['apikeys.read', 'apikeys.write', 'roles.read', 'audit.read', 'apikeys.verify'] },
      { id: 3, name: 'Reader', built_in: true, permissions: ['apikeys.read', 'roles.read', 'audit.read'] },
      { id: 4, name: 'Monitoring', built_in: true, permissions: ['metrics.read'] },
      { id: 5, name: 'Verifier', built_in: true, permissions: ['apikeys.verify'] },
    ]);
    // Roles created through the API get ids from 100 up.
    expect((await query(db.url, "INSERT INTO roles (name, permissions) VALUES ('first-own', '{a.b}') RETURNING id"))[0].id).toBe(100);
  });

  it('two instances migrating one database at once apply each migration exactly once', async () => {
    const db = await emptyDatabase();
    const results = await Promise.all([applyMigrations(db.url, quiet), applyMigrations(db.url, quiet), applyMigrations(db.url, quiet)]);
    const names = await migrationNames();
    expect(results.flat().sort()).toEqual(names);
    const rows = await query<{ n: string }>(db.url, 'SELECT count(*)::text AS n FROM _prisma_migrations');
    expect(rows[0].n).toBe(String(names.length));
  });

  it('two apps starting at once on an empty database both come up healthy', async () => {
    const db = await emptyDatabase();
    const [a, b] = await Promise.all([buildTestApp({ databaseUrl: db.url }), buildTestApp({ databaseUrl: db.url })]);
    for (const app of [a, b]) {
      const res = await app.inject({ method: 'GET', url: '/api/v1/health' });
      expect(res.json()).toEqual({ status: 'healthy', database: 'ok' });
    }
    await Promise.all([a.close(), b.close()]);
  });

  it('create a new migration from a schema change, which then applies; no change creates nothing', async () => {
    const work = await mkdtemp(path.join(tmpdir(), 'keyward-migration-'));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    const migrationsDir = path.join(work, 'migrations');
    const schemaPath = path.join(work, 'schema.prisma');
    await cp(MIGRATIONS_DIR, migrationsDir, { recursive: true });
    await cp(SCHEMA_PATH, schemaPath);
    const db = await emptyDatabase();

    expect(await createMigration(db.url, 'nothing_changed', quiet, { migrationsDir, schemaPath })).toBeNull();

    const schema = await readFile(schemaPath, 'utf8');
    await writeFile(schemaPath, `${schema}\nmodel ProbeThing {\n  id    Int    @id\n  label String\n\n  @@map("probe_things")\n}\n`);
    const dir = await createMigration(db.url, 'add_probe_things', quiet, {
      migrationsDir,
      schemaPath,
      now: new Date('2099-01-02T03:04:05Z'),
    });
    expect(dir).toBe(path.join(migrationsDir, '20990102030405_add_probe_things'));
    const sql = await readFile(path.join(dir!, 'migration.sql'), 'utf8');
    expect(sql).toContain('CREATE TABLE "probe_things"');
    expect(sql).not.toContain('DROP');

    expect(await applyMigrations(db.url, quiet, migrationsDir)).toContain('20990102030405_add_probe_things');
    expect(await query(db.url, 'SELECT count(*)::int AS n FROM probe_things')).toEqual([{ n: 0 }]);
    expect(await createMigration(db.url, 'again', quiet, { migrationsDir, schemaPath })).toBeNull();

    // The shadow databases used for the diff are gone.
    const shadows = await query(db.url, "SELECT datname FROM pg_database WHERE datname LIKE 'prisma_migrate_shadow_db_%'");
    expect(shadows).toEqual([]);
  });

  it('bump a key\'s row version for changes made behind the server\'s back (direct SQL), not for its own', async () => {
    const db = await emptyDatabase();
    await applyMigrations(db.url, quiet);
    const A = '11111111-1111-4111-8111-111111111111';
    const B = '22222222-2222-4222-8222-222222222222';
    const version = async (id: string) => (await query<{ version: number }>(db.url, `SELECT version FROM api_keys WHERE id = '${id}'`))[0].version;
    await query(db.url, `INSERT INTO api_keys (id, name, key_prefix, hash) VALUES ('${A}', 'a', 'jim_ak_aaaaaaaaa', 'h'), ('${B}', 'b', 'jim_ak_bbbbbbbbb', 'h')`);
    await query(db.url, `INSERT INTO api_key_roles VALUES ('${A}', 1)`);
    const a0 = await version(A);
    await query(db.url, `UPDATE api_keys SET is_enabled = false WHERE id = '${A}'`);
    expect(await version(A)).toBe(a0 + 1);
    await query(db.url, `UPDATE api_keys SET hash = 'replaced' WHERE id = '${A}'`);
    expect(await version(A)).toBe(a0 + 2);
    await query(db.url, `UPDATE api_keys SET last_used_at = now(), last_used_from_ip = '10.0.0.1' WHERE id = '${A}'`);
    expect(await version(A)).toBe(a0 + 2); // usage is not a change
    // keyward's own fields beyond JIM's: an allowlist, a limit, a grace period, metadata.
    const b0 = await version(B);
    for (const [i, set] of ["allowed_cidrs = ARRAY['10.0.0.0/8']", 'rate_limit_max = 5, rate_limit_window_seconds = 60', "previous_hash = 'old', previous_key_expires_at = now() + interval '1 hour'", `metadata = '{"a":1}'`].entries()) {
      await query(db.url, `UPDATE api_keys SET ${set} WHERE id = '${B}'`);
      expect(await version(B), set).toBe(b0 + i + 1);
    }
    await query(db.url, `UPDATE api_keys SET version = ${b0} WHERE id = '${B}'`);
    await query(db.url, `UPDATE api_key_roles SET api_key_id = '${B}' WHERE api_key_id = '${A}'`);
    expect([await version(A), await version(B)]).toEqual([a0 + 3, b0 + 1]);
    await query(db.url, 'TRUNCATE api_key_roles');
    expect([await version(A), await version(B)]).toEqual([a0 + 4, b0 + 2]);
    await query(db.url, `UPDATE roles SET name = 'Readers' WHERE id = 3`);
    await query(db.url, `BEGIN; SELECT set_config('keyward.versioned', 'on', true); UPDATE api_keys SET name = 'own', hash = 'h2' WHERE id = '${A}'; COMMIT`);
    expect(await version(A)).toBe(a0 + 4); // keyward's own writes bump versions themselves
  });

  it('refuse an unsafe migration name', async () => {
    await expect(createMigration('postgresql://x@127.0.0.1:1/x', '../evil', quiet)).rejects.toThrow(/migration name/);
  });
});
