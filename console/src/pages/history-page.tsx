// A key's change history, and two of its versions side by side: every snapshot field of each,
// the ones that differ (by the API's own comparison) marked in words, not by colour alone.
import { useState } from 'react';
import { api } from '../api';
import { ErrorMessage, Loading } from '../components/feedback';
import { Page } from '../components/page';
import { value, when } from '../format';
import { href } from '../router';
import type { Comparison, HistoryEntry } from '../types';
import { useLoad } from '../use-load';

export function HistoryPage({ id }: { id: string }) {
  const history = useLoad(async () => (await api.get<HistoryEntry[]>(`/apikeys/${encodeURIComponent(id)}/change-history`, { limit: 1000 })).data, [id]);
  const [from, setFrom] = useState<number | null>(null);
  const [to, setTo] = useState<number | null>(null);
  const [compared, setCompared] = useState<{ cmp: Comparison; a: HistoryEntry; b: HistoryEntry } | null>(null);
  const [error, setError] = useState<unknown>(null);

  const entries = history.data ?? [];
  const name = entries[0]?.snapshot.name as string | undefined;
  // Defaults: the newest version against the one before it.
  const fromV = from ?? entries[1]?.version ?? entries[0]?.version;
  const toV = to ?? entries[0]?.version;

  return (
    <Page title={`Change history${name ? ` of ${name}` : ''}`} actions={<a href={href(`/keys/${id}`)}>Back to the key</a>}>
      <ErrorMessage error={history.error} />
      {history.loading && !history.data ? <Loading what="the history" /> : null}
      {entries.length ? (
        <>
          <div className="table-wrap">
            <table>
              <caption>Every change, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Version</th>
                  <th scope="col">Operation</th>
                  <th scope="col">When</th>
                  <th scope="col">By</th>
                  <th scope="col">Reason</th>
                </tr>
              </thead>
              <tbody>
                {entries.map((e) => (
                  <tr key={e.version}>
                    <td>{e.version}</td>
                    <td>{e.operation}</td>
                    <td>{when(e.changedAt)}</td>
                    <td>{e.actor.name ?? e.actor.type}</td>
                    <td>{e.changeReason ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2>Compare two versions</h2>
          <form
            className="filters"
            onSubmit={async (ev) => {
              ev.preventDefault();
              setError(null);
              try {
                const cmp = (await api.get<Comparison>(`/apikeys/${encodeURIComponent(id)}/change-history/compare`, { fromVersion: fromV, toVersion: toV })).data;
                const a = entries.find((e) => e.version === fromV)!;
                const b = entries.find((e) => e.version === toV)!;
                setCompared({ cmp, a, b });
              } catch (e) {
                setError(e);
              }
            }}
          >
            <VersionSelect id="compare-from" label="From version" entries={entries} value={fromV} onChange={setFrom} />
            <VersionSelect id="compare-to" label="To version" entries={entries} value={toV} onChange={setTo} />
            <button type="submit">Compare</button>
          </form>
          <ErrorMessage error={error} />
          {compared ? <SideBySide {...compared} /> : null}
        </>
      ) : null}
    </Page>
  );
}

function VersionSelect(props: { id: string; label: string; entries: HistoryEntry[]; value: number | undefined; onChange: (v: number) => void }) {
  return (
    <div className="field narrow">
      <label htmlFor={props.id}>{props.label}</label>
      <select id={props.id} value={props.value} onChange={(e) => props.onChange(Number(e.target.value))}>
        {props.entries.map((e) => (
          <option key={e.version} value={e.version}>
            {e.version} ({e.operation})
          </option>
        ))}
      </select>
    </div>
  );
}

function SideBySide({ cmp, a, b }: { cmp: Comparison; a: HistoryEntry; b: HistoryEntry }) {
  const changed = new Set(cmp.changes.map((c) => c.field));
  const fields = [...new Set([...Object.keys(a.snapshot), ...Object.keys(b.snapshot), ...changed])];
  return (
    <div className="table-wrap">
      <table className="diff" data-testid="diff">
        <caption>
          Version {cmp.fromVersion} and version {cmp.toVersion} side by side: {changed.size === 0 ? 'no field differs' : changed.size === 1 ? '1 field differs' : `${changed.size} fields differ`}
        </caption>
        <thead>
          <tr>
            <th scope="col">Field</th>
            <th scope="col">Version {cmp.fromVersion}</th>
            <th scope="col">Version {cmp.toVersion}</th>
          </tr>
        </thead>
        <tbody>
          {fields.map((f) => (
            <tr key={f} className={changed.has(f) ? 'changed' : undefined}>
              <th scope="row">
                {f}
                {changed.has(f) ? <span className="badge changed-badge"> changed</span> : null}
              </th>
              <td>
                <pre>{value(a.snapshot[f])}</pre>
              </td>
              <td>
                <pre>{value(b.snapshot[f])}</pre>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
