// The product and its version, from package.json (next to src/ in a checkout, next to dist/ in
// the image: both are two levels up from this file).
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };

export const PRODUCT = pkg.name;
export const VERSION = pkg.version;
