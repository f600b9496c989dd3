// Builds the web console (console/ → dist/console) with Vite, only when it is missing or older
// than its sources: `npm start` runs this first (prestart), so a fresh clone serves the console
// after `npm ci && npm start`, and later starts cost a few stat calls. `npm run build` runs it too.
// --force builds whatever the dates say.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = path.join(ROOT, 'console');
const OUT = path.join(ROOT, 'dist', 'console');
const BUILT = path.join(OUT, 'index.html');

/** The newest modification time under a folder (or of a file). */
function newest(file) {
  const s = statSync(file);
  if (!s.isDirectory()) return s.mtimeMs;
  let max = s.mtimeMs;
  for (const entry of readdirSync(file)) {
    if (entry === 'node_modules' || entry.startsWith('.')) continue;
    max = Math.max(max, newest(path.join(file, entry)));
  }
  return max;
}

function builtAt() {
  try {
    return statSync(BUILT).mtimeMs;
  } catch {
    return -1;
  }
}

const force = process.argv.includes('--force');
// The lockfile too: an upgraded React or Chart.js is a new build.
const sources = Math.max(newest(SOURCE), newest(path.join(ROOT, 'package-lock.json')));
if (!force && builtAt() >= sources) {
  process.exit(0);
}

const started = Date.now();
const { build } = await import('vite');
await build({ root: SOURCE, configFile: path.join(SOURCE, 'vite.config.ts'), logLevel: 'warn', mode: 'production' });
console.log(`console built into ${path.relative(ROOT, OUT)}/ in ${((Date.now() - started) / 1000).toFixed(1)} s`);
