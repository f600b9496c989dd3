// Create a key. The reply carries the secret, the only time the server ever sends it: it is shown
// here once, with a copy button, and forgotten when the page is left.
import { useState } from 'react';
import { api } from '../api';
import { ErrorMessage } from '../components/feedback';
import { bodyOf, initialValues, KeyForm } from '../components/key-form';
import { Page } from '../components/page';
import { SecretOnce } from '../components/secret-once';
import type { Can } from '../permissions';
import { href } from '../router';
import type { CreatedApiKey, Role } from '../types';
import { useLoad } from '../use-load';

export function CreateKeyPage({ can }: { can: Can }) {
  const roles = useLoad(async () => (can('roles.read') ? (await api.get<Role[]>('/roles')).data : undefined), []);
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  if (!can('apikeys.write')) {
    return (
      <Page title="Create a key">
        <p>Your key may not create keys (it lacks apikeys.write).</p>
      </Page>
    );
  }
  if (created) {
    return (
      <Page title="Key created">
        <p>
          <strong>{created.name}</strong> was created (prefix <span className="mono">{created.keyPrefix}</span>).
        </p>
        <SecretOnce label="The new key's secret" secret={created.key} />
        <p>
          <a href={href(`/keys/${created.id}`)}>Open the key</a> · <a href={href('/keys')}>Back to the keys</a>
        </p>
      </Page>
    );
  }
  return (
    <Page title="Create a key">
      <KeyForm
        idPrefix="create"
        initial={initialValues()}
        roles={roles.data}
        submitLabel="Create the key"
        busy={busy}
        onSubmit={async (v) => {
          setBusy(true);
          setError(null);
          try {
            const body = bodyOf(v);
            // Absent rather than null on create: no allowlist, the default limit, no metadata.
            for (const f of ['allowedCidrs', 'rateLimit', 'metadata', 'expiresAt', 'description']) if (body[f] === null) delete body[f];
            setCreated((await api.post<CreatedApiKey>('/apikeys', body)).data);
          } catch (e) {
            setError(e);
          } finally {
            setBusy(false);
          }
        }}
      />
      <ErrorMessage error={error} />
    </Page>
  );
}
