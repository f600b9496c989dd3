// npm run audit:prod — `npm audit --omit=dev`, failing (exit 1) on a high or critical advisory
// that has a fix available; everything else is printed. When the registry's audit endpoint
// cannot be reached (some mirrors and proxies refuse it) it fails too, unless
// AUDIT_ALLOW_UNAVAILABLE=1 says that is known and accepted (then it says so loudly, exit 0).
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

/** The advisories that block: high or critical with a fix available. */
export function judge(report) {
  const all = Object.entries(report.vulnerabilities ?? {}).map(([name, v]) => ({
    name,
    severity: v.severity,
    fix: v.fixAvailable === false ? null : v.fixAvailable === true ? 'npm audit fix' : `${v.fixAvailable.name}@${v.fixAvailable.version}${v.fixAvailable.isSemVerMajor ? ' (major)' : ''}`,
    via: (v.via ?? []).map((x) => (typeof x === 'string' ? x : x.title ?? x.url ?? x.source)).join('; '),
  }));
  const blocking = all.filter((a) => (a.severity === 'high' || a.severity === 'critical') && a.fix !== null);
  return { all, blocking };
}

function main() {
  const r = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8' });
  let report;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    report = null;
  }
  if (!report || report.error || report.message) {
    const why = report?.message ?? report?.error?.summary ?? (r.stderr.trim().split('\n').pop() || 'no report');
    if (process.env.AUDIT_ALLOW_UNAVAILABLE === '1') {
      console.log(`audit: NOT CHECKED: the registry's audit endpoint did not answer (${why}); allowed by AUDIT_ALLOW_UNAVAILABLE=1`);
      return 0;
    }
    console.log(`audit: the registry's audit endpoint did not answer (${why}); set AUDIT_ALLOW_UNAVAILABLE=1 to accept that`);
    return 1;
  }
  const { all, blocking } = judge(report);
  console.log(`audit: ${all.length} vulnerable production package(s); ${blocking.length} high/critical with a fix`);
  for (const a of all) console.log(`  ${blocking.includes(a) ? 'BLOCKING' : 'noted   '} ${a.severity.padEnd(8)} ${a.name}: ${a.via} — fix: ${a.fix ?? 'none yet'}`);
  return blocking.length ? 1 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exit(main());
