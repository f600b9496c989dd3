// The fields of a key, for creating one and for editing one. Editing sends only what changed,
// so the history records the change that was meant (and the escalation guard judges only that).
import { useState, type FormEvent } from 'react';
import { fromLocalInput, toLocalInput } from '../format';
import type { ApiKey, Role } from '../types';

export interface KeyFormValues {
  name: string;
  description: string;
  roleIds: number[];
  expiresAt: string;
  metadata: string;
  allowedCidrs: string;
  rateLimitLimit: string;
  rateLimitWindow: string;
  changeReason: string;
}

export function initialValues(k?: ApiKey): KeyFormValues {
  return {
    name: k?.name ?? '',
    description: k?.description ?? '',
    roleIds: k?.roles.map((r) => r.id) ?? [],
    expiresAt: toLocalInput(k?.expiresAt ?? null),
    metadata: k && Object.keys(k.metadata).length ? JSON.stringify(k.metadata, null, 2) : '',
    allowedCidrs: k?.allowedCidrs?.join('\n') ?? '',
    rateLimitLimit: k?.rateLimit ? String(k.rateLimit.limit) : '',
    rateLimitWindow: k?.rateLimit ? String(k.rateLimit.windowSeconds) : '',
    changeReason: '',
  };
}

/** The request body for these values; with `before`, only the fields that differ from it. */
export function bodyOf(v: KeyFormValues, before?: KeyFormValues): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const changed = (f: keyof KeyFormValues) => !before || JSON.stringify(v[f]) !== JSON.stringify(before[f]);
  if (changed('name')) out.name = v.name.trim();
  if (changed('description')) out.description = v.description.trim() ? v.description : null;
  if (changed('roleIds')) out.roleIds = v.roleIds;
  if (changed('expiresAt')) out.expiresAt = fromLocalInput(v.expiresAt);
  if (changed('metadata')) out.metadata = v.metadata.trim() ? parseMetadata(v.metadata) : null;
  if (changed('allowedCidrs')) {
    const list = v.allowedCidrs.split(/[\s,]+/).filter(Boolean);
    out.allowedCidrs = list.length ? list : null;
  }
  if (changed('rateLimitLimit') || changed('rateLimitWindow')) {
    out.rateLimit = v.rateLimitLimit || v.rateLimitWindow ? { limit: Number(v.rateLimitLimit), windowSeconds: Number(v.rateLimitWindow) } : null;
  }
  if (v.changeReason.trim()) out.changeReason = v.changeReason.trim();
  return out;
}

export class MetadataError extends Error {}

function parseMetadata(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MetadataError('Metadata must be a JSON object, such as {"team": "billing"}.');
  }
}

export function KeyForm(props: {
  initial: KeyFormValues;
  roles: Role[] | undefined;
  submitLabel: string;
  busy: boolean;
  onSubmit: (v: KeyFormValues) => void;
  idPrefix: string;
}) {
  const [v, setV] = useState(props.initial);
  const id = (f: string) => `${props.idPrefix}-${f}`;
  const set = (f: keyof KeyFormValues) => (e: { target: { value: string } }) => setV({ ...v, [f]: e.target.value });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    props.onSubmit(v);
  };
  return (
    <form onSubmit={submit} className="key-form">
      <div className="field">
        <label htmlFor={id('name')}>Name</label>
        <input id={id('name')} required maxLength={200} value={v.name} onChange={set('name')} />
      </div>
      <div className="field">
        <label htmlFor={id('description')}>Description</label>
        <textarea id={id('description')} rows={2} maxLength={1000} value={v.description} onChange={set('description')} />
      </div>
      <fieldset>
        <legend>Roles</legend>
        {props.roles ? (
          props.roles.map((r) => (
            <div className="check" key={r.id}>
              <input
                type="checkbox"
                id={id(`role-${r.id}`)}
                checked={v.roleIds.includes(r.id)}
                onChange={(e) => setV({ ...v, roleIds: e.target.checked ? [...v.roleIds, r.id].sort((a, b) => a - b) : v.roleIds.filter((x) => x !== r.id) })}
              />
              <label htmlFor={id(`role-${r.id}`)}>
                {r.name} <span className="muted">({r.permissions.join(', ') || 'no permissions'})</span>
              </label>
            </div>
          ))
        ) : (
          <p className="muted">Your key may not read the roles (roles.read), so they cannot be changed here.</p>
        )}
      </fieldset>
      <div className="field">
        <label htmlFor={id('expires')}>Expires (your local time; empty: never)</label>
        <input id={id('expires')} type="datetime-local" value={v.expiresAt} onChange={set('expiresAt')} />
      </div>
      <div className="field">
        <label htmlFor={id('cidrs')}>Address allowlist (CIDR blocks, one a line; empty: any address)</label>
        <textarea id={id('cidrs')} rows={2} className="mono" value={v.allowedCidrs} onChange={set('allowedCidrs')} placeholder="10.0.0.0/8" />
      </div>
      <fieldset className="inline">
        <legend>Rate limit (empty: the server's default)</legend>
        <div className="field narrow">
          <label htmlFor={id('rl-limit')}>Requests</label>
          <input id={id('rl-limit')} type="number" min={1} value={v.rateLimitLimit} onChange={set('rateLimitLimit')} />
        </div>
        <div className="field narrow">
          <label htmlFor={id('rl-window')}>Per seconds</label>
          <input id={id('rl-window')} type="number" min={1} max={86400} value={v.rateLimitWindow} onChange={set('rateLimitWindow')} />
        </div>
      </fieldset>
      <div className="field">
        <label htmlFor={id('metadata')}>Metadata (a JSON object)</label>
        <textarea id={id('metadata')} rows={3} className="mono" value={v.metadata} onChange={set('metadata')} placeholder='{"team": "billing"}' />
      </div>
      <div className="field">
        <label htmlFor={id('reason')}>Reason for the change (kept in the history)</label>
        <input id={id('reason')} maxLength={1000} value={v.changeReason} onChange={set('changeReason')} />
      </div>
      <button type="submit" disabled={props.busy}>
        {props.busy ? 'Saving…' : props.submitLabel}
      </button>
    </form>
  );
}
