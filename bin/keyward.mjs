#!/usr/bin/env node
// The `keyward` command. A checkout with dev dependencies runs the TypeScript source through tsx;
// an installation without them (the container image, `npm ci --omit=dev` after a build) runs the
// compiled dist/cli/main.js.
import { existsSync } from 'node:fs';

const root = new URL('../', import.meta.url);
let entry = new URL('dist/cli/main.js', root);
try {
  const source = new URL('src/cli/main.ts', root);
  if (existsSync(source)) {
    const { register } = await import('tsx/esm/api');
    register();
    entry = source;
  }
} catch {
  // no tsx: the compiled entry
}
if (!existsSync(entry)) {
  process.stderr.write('keyward: neither the sources with tsx nor dist/ are here; run `npm ci` (or `npm run build`)\n');
  process.exit(1);
}
const { main } = await import(entry.href);
const code = await main(process.argv.slice(2), process.env, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
// Exit once the output is written (an idle keep-alive socket must not hold the process open).
process.stdout.write('', () => process.exit(code));
