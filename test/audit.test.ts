// The CI audit gate's rule: fail on a high or critical advisory with a fix, print the rest.
import { describe, expect, it } from 'vitest';
// @ts-expect-error a plain .mjs script without types
import { judge } from '../scripts/audit.mjs';

const report = (vulnerabilities: Record<string, unknown>) => ({ auditReportVersion: 2, vulnerabilities });
const advisory = (severity: string, fixAvailable: unknown) => ({ severity, fixAvailable, via: [{ title: `${severity} thing` }] });

describe('npm run audit:prod', () => {
  it('blocks only high or critical advisories that can be fixed', () => {
    const { all, blocking } = judge(
      report({
        a: advisory('critical', true),
        b: advisory('high', { name: 'b', version: '2.0.0', isSemVerMajor: true }),
        c: advisory('high', false),
        d: advisory('moderate', true),
        e: advisory('low', false),
      }),
    );
    expect(all.map((x: { name: string }) => x.name)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(blocking.map((x: { name: string; fix: string }) => [x.name, x.fix])).toEqual([
      ['a', 'npm audit fix'],
      ['b', 'b@2.0.0 (major)'],
    ]);
  });

  it('a clean report blocks nothing', () => {
    expect(judge(report({}))).toEqual({ all: [], blocking: [] });
  });
});
