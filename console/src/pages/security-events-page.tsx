// Failed authentications as the server aggregates them (per key prefix, address, reason and
// 15-minute window), filtered by the API's own parameters.
import { useState } from 'react';
import { api } from '../api';
import { ErrorMessage, Loading } from '../components/feedback';
import { Page } from '../components/page';
import { fromLocalInput, when } from '../format';
import type { SecurityEvent } from '../types';
import { useLoad } from '../use-load';

const REASONS = ['UNAUTHENTICATED', 'API_KEY_INVALID', 'API_KEY_DISABLED', 'API_KEY_EXPIRED', 'IP_NOT_ALLOWED', 'RATE_LIMITED'];

export function SecurityEventsPage() {
  const [draft, setDraft] = useState({ from: '', to: '', reason: '', ip: '' });
  const [query, setQuery] = useState(draft);
  const events = useLoad(
    async () =>
      (
        await api.get<SecurityEvent[]>('/security-events', {
          from: fromLocalInput(query.from),
          to: fromLocalInput(query.to),
          reason: query.reason || undefined,
          ip: query.ip.trim() || undefined,
          limit: 500,
        })
      ).data,
    [query],
  );
  return (
    <Page title="Security events">
      <p>Failed authentications, counted per key prefix, client address, reason and 15-minute window. They are written in batches, so the newest may take a few seconds to appear.</p>
      <form
        className="filters"
        aria-label="Filter security events"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery({ ...draft });
        }}
      >
        <div className="field">
          <label htmlFor="se-from">From</label>
          <input id="se-from" type="datetime-local" value={draft.from} onChange={(e) => setDraft({ ...draft, from: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="se-to">To</label>
          <input id="se-to" type="datetime-local" value={draft.to} onChange={(e) => setDraft({ ...draft, to: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="se-reason">Reason</label>
          <select id="se-reason" value={draft.reason} onChange={(e) => setDraft({ ...draft, reason: e.target.value })}>
            <option value="">Any</option>
            {REASONS.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="se-ip">Client address</label>
          <input id="se-ip" value={draft.ip} onChange={(e) => setDraft({ ...draft, ip: e.target.value })} />
        </div>
        <button type="submit">Filter</button>
      </form>
      <ErrorMessage error={events.error} />
      {events.loading && !events.data ? <Loading what="security events" /> : null}
      {events.data ? (
        events.data.length === 0 ? (
          <p role="status">No failed authentication matches.</p>
        ) : (
          <div className="table-wrap">
            <table>
              <caption>Failed authentications, newest window first (at most 500 rows)</caption>
              <thead>
                <tr>
                  <th scope="col">Window</th>
                  <th scope="col">Key prefix</th>
                  <th scope="col">Address</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Count</th>
                  <th scope="col">First seen</th>
                  <th scope="col">Last seen</th>
                </tr>
              </thead>
              <tbody>
                {events.data.map((e) => (
                  <tr key={`${e.windowStart}|${e.keyPrefix}|${e.ip}|${e.reason}`}>
                    <td>{when(e.windowStart)}</td>
                    <td className="mono">{e.keyPrefix}</td>
                    <td className="mono">{e.ip}</td>
                    <td>{e.reason}</td>
                    <td>{e.count}</td>
                    <td>{when(e.firstSeenAt)}</td>
                    <td>{when(e.lastSeenAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      ) : null}
    </Page>
  );
}
