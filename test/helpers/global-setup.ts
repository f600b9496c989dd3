import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { applyMigrations } from '../../src/db/migrate.js';
import { databaseUrl, dropDatabase, dropDatabasesWithPrefix } from './databases.js';
import { choosePostgres } from './postgres-source.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
    pgSource: string;
  }
}

export default async function setup(project: TestProject) {
  const started = Date.now();
  const source = await choosePostgres();
  // One migrated template per run; every test file clones it (fast: a file copy).
  const template = `keyward_tpl_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: source.adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${template}"`);
  await admin.end();
  await applyMigrations(databaseUrl(source.adminUrl, template), { info() {}, debug() {} });
  process.stdout.write(
    `[test harness] PostgreSQL from ${source.kind}; template ${template} ready in ${Date.now() - started} ms\n`,
  );
  project.provide('pgAdminUrl', source.adminUrl);
  project.provide('pgTemplate', template);
  project.provide('pgSource', source.kind);
  return async () => {
    // Test files drop their own databases; this catches any they left (on a shared server).
    await dropDatabasesWithPrefix(source.adminUrl, `${template}_`).catch(() => {});
    await dropDatabase(source.adminUrl, template).catch(() => {});
    await source.stop();
  };
}
