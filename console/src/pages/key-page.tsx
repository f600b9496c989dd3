// One key: everything the API shows of it, and what the signed-in key may do to it (edit,
// enable/disable, rotate with a grace period, delete after typing its name). The server still
// judges each action (escalation guard): a refusal shows its own detail.
import { useState } from 'react';
import { api, ApiError } from '../api';
import { Dialog } from '../components/dialog';
import { ErrorMessage, Loading, Success } from '../components/feedback';
import { bodyOf, initialValues, KeyForm, MetadataError } from '../components/key-form';
import { Page } from '../components/page';
import { SecretOnce } from '../components/secret-once';
import { when } from '../format';
import type { Can } from '../permissions';
import { href, navigate } from '../router';
import type { ApiKey, CreatedApiKey, Role } from '../types';
import { useLoad } from '../use-load';
import { StateBadge } from './keys-page';

type Open = null | 'edit' | 'rotate' | 'delete';

export function KeyPage({ id, can, self }: { id: string; can: Can; self: string }) {
  const key = useLoad(async () => {
    const r = await api.get<ApiKey>(`/apikeys/${encodeURIComponent(id)}`);
    return { key: r.data, etag: r.etag };
  }, [id]);
  const roles = useLoad(async () => (can('roles.read') ? (await api.get<Role[]>('/roles')).data : undefined), []);
  const [open, setOpen] = useState<Open>(null);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [rotated, setRotated] = useState<CreatedApiKey | null>(null);
  const writable = can('apikeys.write');

  const act = async (what: () => Promise<unknown>, message: string, reload = true) => {
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      await what();
      setDone(message);
      setOpen(null);
      if (reload) key.reload();
    } catch (e) {
      setError(e instanceof MetadataError ? new ApiError(400, 'VALIDATION_FAILED', e.message) : e);
    } finally {
      setBusy(false);
    }
  };

  if (key.loading && !key.data) return <Loading what="the key" />;
  if (!key.data) {
    return (
      <Page title="Key">
        <ErrorMessage error={key.error} />
        <a href={href('/keys')}>Back to the keys</a>
      </Page>
    );
  }
  const k = key.data.key;
  const etag = key.data.etag;
  return (
    <Page
      title={`Key ${k.name}`}
      actions={
        <>
          {can('audit.read') ? <a href={href(`/keys/${k.id}/history`)}>Change history</a> : null}
          {can('audit.read') ? <a href={href(`/keys/${k.id}/usage`)}>Usage</a> : null}
        </>
      }
    >
      {done ? <Success>{done}</Success> : null}
      {!open ? <ErrorMessage error={error} /> : null}
      {rotated ? <SecretOnce label="The rotated key's new secret" secret={rotated.key} /> : null}
      {writable ? (
        <div className="actions" role="group" aria-label="Actions on this key">
          <button type="button" onClick={() => (setError(null), setOpen('edit'))}>
            Edit
          </button>
          <button
            type="button"
            disabled={busy}
            onClick={() => act(() => api.patch(`/apikeys/${k.id}`, { isEnabled: !k.isEnabled }, etag), k.isEnabled ? 'The key is disabled: the server refuses it from now on.' : 'The key is enabled.')}
          >
            {k.isEnabled ? 'Disable' : 'Enable'}
          </button>
          <button type="button" onClick={() => (setError(null), setOpen('rotate'))}>
            Rotate
          </button>
          <button type="button" className="danger" onClick={() => (setError(null), setOpen('delete'))}>
            Delete
          </button>
        </div>
      ) : (
        <p className="muted">Your key may read this key but not change it (it lacks apikeys.write).</p>
      )}
      {k.id === self ? <p className="notice">This is the key you are signed in with: disabling, rotating or deleting it signs you out.</p> : null}
      <KeyDetails k={k} />

      <Dialog title="Edit the key" open={open === 'edit'} onClose={() => setOpen(null)}>
        <KeyForm
          idPrefix="edit"
          initial={initialValues(k)}
          roles={roles.data}
          submitLabel="Save"
          busy={busy}
          onSubmit={(v) => act(async () => api.patch(`/apikeys/${k.id}`, bodyOf(v, initialValues(k)), etag), 'Saved.')}
        />
        <ErrorMessage error={error} />
      </Dialog>
      <RotateDialog open={open === 'rotate'} onClose={() => setOpen(null)} busy={busy} error={error} onRotate={(body) => act(async () => setRotated((await api.post<CreatedApiKey>(`/apikeys/${k.id}/rotate`, body, etag)).data), 'Rotated: copy the new secret below.')} />
      <DeleteDialog
        open={open === 'delete'}
        name={k.name}
        busy={busy}
        error={error}
        onClose={() => setOpen(null)}
        onDelete={(reason) => act(async () => (await api.del(`/apikeys/${k.id}`, { changeReason: reason || undefined }), navigate('/keys')), 'Deleted.', false)}
      />
    </Page>
  );
}

function KeyDetails({ k }: { k: ApiKey }) {
  const rows: Array<[string, React.ReactNode]> = [
    ['State', <StateBadge k={k} key="s" />],
    ['Id', <span className="mono" key="i">{k.id}</span>],
    ['Prefix', <span className="mono" key="p">{k.keyPrefix}</span>],
    ['Description', k.description ?? '—'],
    ['Roles', k.roles.map((r) => r.name).join(', ') || 'none'],
    ['Expires', when(k.expiresAt)],
    ['Created', when(k.createdAt)],
    ['Updated', when(k.updatedAt)],
    ['Last used', k.lastUsedAt ? `${when(k.lastUsedAt)} from ${k.lastUsedFromIp ?? 'an unknown address'}` : 'never'],
    ['Address allowlist', k.allowedCidrs?.length ? k.allowedCidrs.join(', ') : 'any address'],
    ['Rate limit', k.rateLimit ? `${k.rateLimit.limit} requests per ${k.rateLimit.windowSeconds} s` : "the server's default"],
    ['Infrastructure key', k.isInfrastructureKey ? 'yes' : 'no'],
  ];
  if (k.previousKeyPrefix) rows.push(['Previous secret (grace period)', `${k.previousKeyPrefix}… works until ${when(k.previousKeyExpiresAt)}`]);
  return (
    <>
      <dl className="details">
        {rows.map(([label, v]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      <h2>Metadata</h2>
      <pre className="json">{JSON.stringify(k.metadata, null, 2)}</pre>
    </>
  );
}

function RotateDialog(props: { open: boolean; onClose: () => void; busy: boolean; error: unknown; onRotate: (body: { gracePeriodSeconds: number; changeReason?: string }) => void }) {
  const [grace, setGrace] = useState('3600');
  const [reason, setReason] = useState('');
  return (
    <Dialog title="Rotate the key" open={props.open} onClose={props.onClose}>
      <p>A new secret for the same key (same id, roles and history). The old secret keeps working for the grace period, then stops.</p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          props.onRotate({ gracePeriodSeconds: Number(grace), changeReason: reason.trim() || undefined });
        }}
      >
        <div className="field narrow">
          <label htmlFor="rotate-grace">Grace period for the old secret (seconds, 0–86400)</label>
          <input id="rotate-grace" type="number" min={0} max={86400} required value={grace} onChange={(e) => setGrace(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="rotate-reason">Reason (kept in the history)</label>
          <input id="rotate-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
        </div>
        <button type="submit" disabled={props.busy}>
          Rotate
        </button>
      </form>
      <ErrorMessage error={props.error} />
    </Dialog>
  );
}

function DeleteDialog(props: { open: boolean; name: string; busy: boolean; error: unknown; onClose: () => void; onDelete: (reason: string) => void }) {
  const [typed, setTyped] = useState('');
  const [reason, setReason] = useState('');
  return (
    <Dialog title="Delete the key" open={props.open} onClose={props.onClose} describedBy="delete-warning">
      <p id="delete-warning">
        Deleting <strong>{props.name}</strong> cannot be undone: every service using it is refused at once. Its history stays readable.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (typed === props.name) props.onDelete(reason.trim());
        }}
      >
        <div className="field">
          <label htmlFor="delete-confirm">Type the key's name to confirm: {props.name}</label>
          <input id="delete-confirm" autoComplete="off" value={typed} onChange={(e) => setTyped(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="delete-reason">Reason (kept in the history)</label>
          <input id="delete-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
        </div>
        <button type="submit" className="danger" disabled={props.busy || typed !== props.name}>
          Delete for good
        </button>
      </form>
      <ErrorMessage error={props.error} />
    </Dialog>
  );
}
