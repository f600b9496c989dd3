// The keys: searched with the API's own name wildcards (`*` any run, `?` one character), filtered
// by state (enabled and disabled by the API, idle by its unusedSince, expired and expiring soon
// over the list it returns), and sorted by any column.
import { useMemo, useState } from 'react';
import { api } from '../api';
import { ErrorMessage, Loading } from '../components/feedback';
import { Page } from '../components/page';
import { DAY_MS, EXPIRING_DAYS, expiringSoon, keyState, when } from '../format';
import type { Can } from '../permissions';
import { href } from '../router';
import type { ApiKey } from '../types';
import { useLoad } from '../use-load';

type Filter = 'all' | 'enabled' | 'disabled' | 'expired' | 'expiring' | 'idle';
type SortKey = 'name' | 'keyPrefix' | 'state' | 'roles' | 'expiresAt' | 'lastUsedAt';
interface Search {
  name: string;
  filter: Filter;
  idleDays: number;
}

const COLUMNS: Array<{ key: SortKey; label: string }> = [
  { key: 'name', label: 'Name' },
  { key: 'keyPrefix', label: 'Prefix' },
  { key: 'state', label: 'State' },
  { key: 'roles', label: 'Roles' },
  { key: 'expiresAt', label: 'Expires' },
  { key: 'lastUsedAt', label: 'Last used' },
];

function sortValue(k: ApiKey, by: SortKey): string | number {
  switch (by) {
    case 'state':
      return keyState(k);
    case 'roles':
      return k.roles.map((r) => r.name).join(', ').toLowerCase();
    case 'expiresAt':
      return k.expiresAt ? new Date(k.expiresAt).getTime() : Number.MAX_SAFE_INTEGER;
    case 'lastUsedAt':
      return k.lastUsedAt ? new Date(k.lastUsedAt).getTime() : 0;
    default:
      return String(k[by]).toLowerCase();
  }
}

export function KeysPage({ can }: { can: Can }) {
  const [draft, setDraft] = useState<Search>({ name: '', filter: 'all', idleDays: 30 });
  const [search, setSearch] = useState<Search>(draft);
  const [sort, setSort] = useState<{ by: SortKey; dir: 1 | -1 }>({ by: 'name', dir: 1 });

  const { data, error, loading } = useLoad(async () => {
    const query: Record<string, string | undefined> = { name: search.name.trim() || undefined };
    if (search.filter === 'enabled') query.isEnabled = 'true';
    if (search.filter === 'disabled') query.isEnabled = 'false';
    if (search.filter === 'idle') query.unusedSince = new Date(Date.now() - search.idleDays * DAY_MS).toISOString();
    return (await api.get<ApiKey[]>('/apikeys', query)).data;
  }, [search]);

  const rows = useMemo(() => {
    const now = Date.now();
    const list = (data ?? []).filter((k) => {
      if (search.filter === 'expired') return keyState(k, now) === 'expired';
      if (search.filter === 'expiring') return expiringSoon(k, now);
      // The API's enabled filter keeps expired keys: they are their own filter here.
      if (search.filter === 'enabled') return keyState(k, now) === 'enabled';
      return true;
    });
    return [...list].sort((a, b) => {
      const x = sortValue(a, sort.by);
      const y = sortValue(b, sort.by);
      return (x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : 1) * sort.dir;
    });
  }, [data, search.filter, sort]);

  return (
    <Page
      title="API keys"
      actions={
        can('apikeys.write') ? (
          <a className="button" href={href('/create')}>
            Create a key
          </a>
        ) : null
      }
    >
      <form
        className="filters"
        role="search"
        aria-label="Search keys"
        onSubmit={(e) => {
          e.preventDefault();
          setSearch({ ...draft });
        }}
      >
        <div className="field">
          <label htmlFor="search-name">Name</label>
          <input id="search-name" type="search" value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })} aria-describedby="search-name-help" />
          <small id="search-name-help">Wildcards: * any characters, ? one character. Case does not matter.</small>
        </div>
        <div className="field">
          <label htmlFor="search-filter">Show</label>
          <select id="search-filter" value={draft.filter} onChange={(e) => setDraft({ ...draft, filter: e.target.value as Filter })}>
            <option value="all">All keys</option>
            <option value="enabled">Enabled</option>
            <option value="disabled">Disabled</option>
            <option value="expired">Expired</option>
            <option value="expiring">Expiring within {EXPIRING_DAYS} days</option>
            <option value="idle">Idle (not used for some days)</option>
          </select>
        </div>
        {draft.filter === 'idle' ? (
          <div className="field narrow">
            <label htmlFor="search-idle">Not used for (days)</label>
            <input id="search-idle" type="number" min={1} max={3650} value={draft.idleDays} onChange={(e) => setDraft({ ...draft, idleDays: Math.max(1, Number(e.target.value) || 1) })} />
          </div>
        ) : null}
        <button type="submit">Search</button>
      </form>
      <ErrorMessage error={error} />
      {loading && !data ? <Loading what="keys" /> : null}
      {data ? (
        <>
          <p role="status" className="muted" id="keys-count">
            {rows.length === 1 ? '1 key' : `${rows.length} keys`}
            {data.length >= 10000 ? ' (the first 10,000 the server returned: narrow the search)' : ''}
          </p>
          <div className="table-wrap">
            <table className="keys">
              <caption className="visually-hidden">API keys; the column buttons sort the table</caption>
              <thead>
                <tr>
                  {COLUMNS.map((c) => (
                    <th key={c.key} scope="col" aria-sort={sort.by === c.key ? (sort.dir === 1 ? 'ascending' : 'descending') : 'none'}>
                      <button type="button" className="sort" onClick={() => setSort((s) => ({ by: c.key, dir: s.by === c.key ? (-s.dir as 1 | -1) : 1 }))}>
                        {c.label}
                        <span aria-hidden="true">{sort.by === c.key ? (sort.dir === 1 ? ' ▲' : ' ▼') : ''}</span>
                      </button>
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {rows.map((k) => (
                  <tr key={k.id}>
                    <td>
                      <a href={href(`/keys/${k.id}`)}>{k.name}</a>
                    </td>
                    <td className="mono">{k.keyPrefix}</td>
                    <td>
                      <StateBadge k={k} />
                    </td>
                    <td>{k.roles.map((r) => r.name).join(', ') || '—'}</td>
                    <td>{when(k.expiresAt)}</td>
                    <td>{when(k.lastUsedAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
    </Page>
  );
}

export function StateBadge({ k }: { k: ApiKey }) {
  const state = keyState(k);
  return (
    <span className={`badge ${state}`}>
      {state === 'enabled' ? 'Enabled' : state === 'disabled' ? 'Disabled' : 'Expired'}
      {state === 'enabled' && expiringSoon(k) ? ' · expiring soon' : ''}
    </span>
  );
}
