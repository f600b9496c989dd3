// Webhook subscriptions and their delivery log. Creating one shows its whsec_ signing secret once.
// A server without WEBHOOK_SECRET_KEY answers 503 WEBHOOKS_NOT_CONFIGURED: said plainly here.
import { useState } from 'react';
import { api, ApiError } from '../api';
import { Dialog } from '../components/dialog';
import { ErrorMessage, Loading, Success } from '../components/feedback';
import { Page } from '../components/page';
import { SecretOnce } from '../components/secret-once';
import { when } from '../format';
import type { Can } from '../permissions';
import { href } from '../router';
import { WEBHOOK_EVENTS, type Webhook, type WebhookDelivery, type WebhookWithSecret } from '../types';
import { useLoad } from '../use-load';

export function WebhooksPage({ can, selected }: { can: Can; selected?: string }) {
  const hooks = useLoad(async () => (await api.get<Webhook[]>('/webhooks')).data, []);
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<WebhookWithSecret | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const writable = can('webhooks.write');

  const act = async (what: () => Promise<unknown>, message: string) => {
    setError(null);
    setDone(null);
    try {
      await what();
      setDone(message);
      hooks.reload();
    } catch (e) {
      setError(e);
    }
  };

  if (hooks.error instanceof ApiError && hooks.error.code === 'WEBHOOKS_NOT_CONFIGURED') {
    return (
      <Page title="Webhooks">
        <div className="notice" role="status" data-testid="webhooks-off">
          <p>
            <strong>Webhooks are switched off on this server.</strong>
          </p>
          <p>{hooks.error.detail}</p>
        </div>
      </Page>
    );
  }
  const selectedHook = hooks.data?.find((h) => h.id === selected);
  return (
    <Page
      title="Webhooks"
      actions={
        writable ? (
          <button type="button" onClick={() => (setError(null), setCreating(true))}>
            Create a webhook
          </button>
        ) : null
      }
    >
      {done ? <Success>{done}</Success> : null}
      {created ? <SecretOnce label={`Signing secret of ${created.url}`} secret={created.secret} /> : null}
      {!creating ? <ErrorMessage error={error} /> : null}
      <ErrorMessage error={hooks.error} />
      {hooks.loading && !hooks.data ? <Loading what="webhooks" /> : null}
      {hooks.data && hooks.data.length === 0 ? <p>No webhook yet.</p> : null}
      {hooks.data && hooks.data.length > 0 ? (
        <div className="table-wrap">
          <table>
            <caption>Webhook subscriptions</caption>
            <thead>
              <tr>
                <th scope="col">Address</th>
                <th scope="col">Events</th>
                <th scope="col">State</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {hooks.data.map((h) => (
                <tr key={h.id}>
                  <th scope="row" className="mono">
                    {h.url}
                    {h.description ? <div className="muted">{h.description}</div> : null}
                  </th>
                  <td>{h.eventTypes.join(', ')}</td>
                  <td>
                    {h.isEnabled ? 'Enabled' : `Disabled${h.disabledReason ? ` (${h.disabledReason})` : ''}`}
                    {h.failingSince ? <div className="muted">failing since {when(h.failingSince)}</div> : null}
                  </td>
                  <td>
                    <div className="actions">
                      <a href={href(`/webhooks/${h.id}`)}>
                        Deliveries<span className="visually-hidden"> of {h.url}</span>
                      </a>
                      {writable ? (
                        <>
                          <button type="button" className="secondary" onClick={() => act(() => api.post(`/webhooks/${h.id}/${h.isEnabled ? 'disable' : 'enable'}`), h.isEnabled ? 'Webhook disabled.' : 'Webhook enabled.')}>
                            {h.isEnabled ? 'Disable' : 'Enable'}
                            <span className="visually-hidden"> {h.url}</span>
                          </button>
                          <button type="button" className="secondary" onClick={() => act(() => api.post(`/webhooks/${h.id}/test`), 'A test event was queued: see its delivery.')}>
                            Send a test<span className="visually-hidden"> to {h.url}</span>
                          </button>
                          <button type="button" className="danger" onClick={() => act(() => api.del(`/webhooks/${h.id}`), 'Webhook deleted.')}>
                            Delete<span className="visually-hidden"> {h.url}</span>
                          </button>
                        </>
                      ) : null}
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {selectedHook ? <Deliveries hook={selectedHook} /> : null}
      <Dialog title="Create a webhook" open={creating} onClose={() => setCreating(false)}>
        <WebhookForm
          onSubmit={(body) =>
            act(async () => {
              setCreated((await api.post<WebhookWithSecret>('/webhooks', body)).data);
              setCreating(false);
            }, 'Webhook created: copy its signing secret.')
          }
        />
        <ErrorMessage error={error} />
      </Dialog>
    </Page>
  );
}

function WebhookForm({ onSubmit }: { onSubmit: (body: { url: string; description: string | null; eventTypes: string[] }) => void }) {
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const [events, setEvents] = useState<string[]>(['apikey.created', 'apikey.updated', 'apikey.rotated', 'apikey.deleted']);
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit({ url: url.trim(), description: description.trim() || null, eventTypes: events });
      }}
    >
      <div className="field">
        <label htmlFor="webhook-url">Address (https://…)</label>
        <input id="webhook-url" type="url" required value={url} onChange={(e) => setUrl(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor="webhook-description">Description</label>
        <input id="webhook-description" value={description} onChange={(e) => setDescription(e.target.value)} />
      </div>
      <fieldset>
        <legend>Events</legend>
        {WEBHOOK_EVENTS.map((ev) => (
          <div className="check" key={ev}>
            <input type="checkbox" id={`webhook-event-${ev}`} checked={events.includes(ev)} onChange={(e) => setEvents(e.target.checked ? [...events, ev] : events.filter((x) => x !== ev))} />
            <label htmlFor={`webhook-event-${ev}`}>{ev}</label>
          </div>
        ))}
      </fieldset>
      <button type="submit">Create the webhook</button>
    </form>
  );
}

function Deliveries({ hook }: { hook: Webhook }) {
  const log = useLoad(async () => (await api.get<WebhookDelivery[]>(`/webhooks/${hook.id}/deliveries`, { limit: 100 })).data, [hook.id]);
  return (
    <section aria-labelledby="deliveries-title">
      <h2 id="deliveries-title">Deliveries to {hook.url}</h2>
      <ErrorMessage error={log.error} />
      {log.loading && !log.data ? <Loading what="deliveries" /> : null}
      {log.data && log.data.length === 0 ? <p>Nothing was delivered yet.</p> : null}
      {log.data && log.data.length > 0 ? (
        <div className="table-wrap">
          <table>
            <caption>Newest first (at most 100)</caption>
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Status</th>
                <th scope="col">Attempts</th>
                <th scope="col">Created</th>
                <th scope="col">Last answer</th>
              </tr>
            </thead>
            <tbody>
              {log.data.map((d) => {
                const last = d.attempts.at(-1);
                return (
                  <tr key={d.id}>
                    <td>{d.eventType}</td>
                    <td>
                      {d.status}
                      {d.nextAttemptAt ? <div className="muted">next try {when(d.nextAttemptAt)}</div> : null}
                    </td>
                    <td>{d.attemptCount}</td>
                    <td>{when(d.createdAt)}</td>
                    <td>{last ? (last.statusCode ? `HTTP ${last.statusCode}` : (last.error ?? '—')) : '—'}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
