// `prisma generate` without Prisma's binary host: generating the client needs no native
// engine, but the CLI tries to download one unless PRISMA_SCHEMA_ENGINE_BINARY names a file.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const env = { ...process.env };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath; // any existing file stops the download
env.PRISMA_HIDE_UPDATE_MESSAGE = '1';
const cli = require.resolve('prisma/build/index.js');
const r = spawnSync(process.execPath, [cli, 'generate', ...process.argv.slice(2)], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
