// Sign in by pasting a key. It is checked with GET /userinfo and only then kept, in this tab's
// sessionStorage: closing the tab or "Sign out" forgets it.
import { useState } from 'react';
import { request, session } from '../api';
import { ErrorMessage } from '../components/feedback';
import type { UserInfo } from '../types';

export function SignIn({ onSignedIn, reason }: { onSignedIn: (u: UserInfo) => void; reason: string | null }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main id="main" className="sign-in">
      <h1>keyward console</h1>
      <p>Sign in with an API key. It stays in this browser tab only (sessionStorage) and is sent to this server as the <code>X-API-Key</code> header; nothing else stores it.</p>
      {reason ? (
        <p className="notice" role="status">
          {reason}
        </p>
      ) : null}
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const trimmed = key.trim();
            const me = await request<UserInfo>('GET', '/userinfo', { key: trimmed });
            session.set(trimmed);
            setKey('');
            onSignedIn(me.data);
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <label htmlFor="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" autoComplete="off" spellCheck={false} required value={key} onChange={(e) => setKey(e.target.value)} placeholder="jim_ak_…" />
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <ErrorMessage error={error} />
    </main>
  );
}
