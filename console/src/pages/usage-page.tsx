// Usage: the busiest keys over a period, and one key's requests over time by outcome (VALID,
// DISABLED, …), each as a chart with its data as a table.
import { useMemo, useState } from 'react';
import { api } from '../api';
import { BarChart } from '../components/chart';
import { ErrorMessage, Loading } from '../components/feedback';
import { Page } from '../components/page';
import { when } from '../format';
import type { Can } from '../permissions';
import { href } from '../router';
import { OUTCOMES, type ApiKey, type TopUsage, type UsageSeries } from '../types';
import { useLoad } from '../use-load';

const RANGES = {
  '1h': { label: 'the last hour', ms: 3600_000, interval: 'minute' },
  '24h': { label: 'the last 24 hours', ms: 24 * 3600_000, interval: 'hour' },
  '7d': { label: 'the last 7 days', ms: 7 * 24 * 3600_000, interval: 'hour' },
  '30d': { label: 'the last 30 days', ms: 30 * 24 * 3600_000, interval: 'day' },
} as const;
type Range = keyof typeof RANGES;

const OUTCOME_LABEL: Record<string, string> = {
  VALID: 'Valid',
  DISABLED: 'Disabled',
  EXPIRED: 'Expired',
  INSUFFICIENT_PERMISSIONS: 'Insufficient permissions',
  RATE_LIMITED: 'Rate limited',
  IP_NOT_ALLOWED: 'Address not allowed',
};

function period(range: Range) {
  // Whole minutes, so the buckets line up with the server's.
  const to = new Date(Math.ceil(Date.now() / 60_000) * 60_000);
  return { from: new Date(to.getTime() - RANGES[range].ms).toISOString(), to: to.toISOString(), interval: RANGES[range].interval };
}

export function UsagePage({ keyId, can }: { keyId?: string; can: Can }) {
  const [range, setRange] = useState<Range>('24h');
  return (
    <Page title={keyId ? 'Usage of a key' : 'Usage'} actions={keyId ? <a href={href(`/keys/${keyId}`)}>Back to the key</a> : null}>
      <div className="field narrow">
        <label htmlFor="usage-range">Period</label>
        <select id="usage-range" value={range} onChange={(e) => setRange(e.target.value as Range)}>
          {Object.entries(RANGES).map(([k, r]) => (
            <option key={k} value={k}>
              {r.label}
            </option>
          ))}
        </select>
      </div>
      {keyId ? <KeyUsage keyId={keyId} range={range} can={can} /> : <TopKeys range={range} />}
    </Page>
  );
}

function TopKeys({ range }: { range: Range }) {
  const top = useLoad(async () => {
    const { from, to } = period(range);
    return (await api.get<TopUsage>('/usage/top', { from, to, limit: 10 })).data;
  }, [range]);
  const labels = useMemo(() => top.data?.keys.map((k) => k.name) ?? [], [top.data]);
  const datasets = useMemo(() => OUTCOMES.map((o) => ({ label: OUTCOME_LABEL[o], data: top.data?.keys.map((k) => k.counts[o] ?? 0) ?? [] })), [top.data]);
  if (top.loading && !top.data) return <Loading what="usage" />;
  if (!top.data) return <ErrorMessage error={top.error} />;
  return (
    <section aria-labelledby="top-title">
      <h2 id="top-title">The busiest keys in {RANGES[range].label}</h2>
      {top.data.keys.length === 0 ? (
        <p>No key was used in this period.</p>
      ) : (
        <>
          <BarChart label={`Requests per key in ${RANGES[range].label}, by outcome; the same data is in the table below`} labels={labels} datasets={datasets} stacked horizontal />
          <UsageTable
            caption={`Requests per key in ${RANGES[range].label}`}
            head="Key"
            rows={top.data.keys.map((k) => ({ id: k.keyId, label: <a href={href(`/keys/${k.keyId}/usage`)}>{k.name}</a>, total: k.total, counts: k.counts }))}
          />
        </>
      )}
    </section>
  );
}

function KeyUsage({ keyId, range, can }: { keyId: string; range: Range; can: Can }) {
  const series = useLoad(async () => (await api.get<UsageSeries>(`/apikeys/${encodeURIComponent(keyId)}/usage`, period(range))).data, [keyId, range]);
  const key = useLoad(async () => (can('apikeys.read') ? (await api.get<ApiKey>(`/apikeys/${encodeURIComponent(keyId)}`)).data : undefined), [keyId]);
  const labels = useMemo(() => series.data?.buckets.map((b) => bucketLabel(b.start, series.data!.interval)) ?? [], [series.data]);
  const datasets = useMemo(() => OUTCOMES.map((o) => ({ label: OUTCOME_LABEL[o], data: series.data?.buckets.map((b) => b.counts[o] ?? 0) ?? [] })), [series.data]);
  if (series.loading && !series.data) return <Loading what="usage" />;
  if (!series.data) return <ErrorMessage error={series.error} />;
  const s = series.data;
  const name = key.data?.name ?? keyId;
  const used = s.buckets.filter((b) => b.total > 0);
  return (
    <section aria-labelledby="key-usage-title">
      <h2 id="key-usage-title">
        Requests with {name} in {RANGES[range].label}: {s.totals.total}
      </h2>
      <BarChart label={`Requests with ${name} per ${s.interval} in ${RANGES[range].label}, by outcome; the same data is in the tables below`} labels={labels} datasets={datasets} stacked />
      <UsageTable caption="Totals by outcome" head="Period" rows={[{ id: 'total', label: RANGES[range].label, total: s.totals.total, counts: s.totals.counts }]} />
      <details>
        <summary>Every {s.interval} with requests ({used.length})</summary>
        <UsageTable caption={`Requests per ${s.interval}`} head="Starting" rows={used.map((b) => ({ id: b.start, label: when(b.start), total: b.total, counts: b.counts }))} />
      </details>
    </section>
  );
}

function bucketLabel(iso: string, interval: string) {
  const d = new Date(iso);
  if (interval === 'day') return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

function UsageTable(props: { caption: string; head: string; rows: Array<{ id: string; label: React.ReactNode; total: number; counts: Record<string, number> }> }) {
  return (
    <div className="table-wrap">
      <table className="usage" data-testid="usage-table">
        <caption>{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">{props.head}</th>
            <th scope="col">Total</th>
            {OUTCOMES.map((o) => (
              <th scope="col" key={o}>
                {OUTCOME_LABEL[o]}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr key={r.id}>
              <th scope="row">{r.label}</th>
              <td>{r.total}</td>
              {OUTCOMES.map((o) => (
                <td key={o} data-outcome={o}>
                  {r.counts[o] ?? 0}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
