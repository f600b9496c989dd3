// The shell: sign-in gate, skip link, navigation (only what the key may do), and the page the
// hash names. Signing out forgets the key (sessionStorage) and every loaded page with it.
import { useCallback, useEffect, useState } from 'react';
import { ApiError, request, session, setUnauthorizedHandler } from './api';
import { grants, type Can } from './permissions';
import { href, match, useRoute } from './router';
import type { UserInfo } from './types';
import { SignIn } from './pages/sign-in';
import { KeysPage } from './pages/keys-page';
import { KeyPage } from './pages/key-page';
import { CreateKeyPage } from './pages/create-key-page';
import { HistoryPage } from './pages/history-page';
import { UsagePage } from './pages/usage-page';
import { SecurityEventsPage } from './pages/security-events-page';
import { RolesPage } from './pages/roles-page';
import { WebhooksPage } from './pages/webhooks-page';
import { Page } from './components/page';

const NAV: Array<{ path: string; label: string; needs: string }> = [
  { path: '/keys', label: 'Keys', needs: 'apikeys.read' },
  { path: '/usage', label: 'Usage', needs: 'audit.read' },
  { path: '/security-events', label: 'Security events', needs: 'audit.read' },
  { path: '/roles', label: 'Roles', needs: 'roles.read' },
  { path: '/webhooks', label: 'Webhooks', needs: 'webhooks.read' },
];

export function App() {
  const [user, setUser] = useState<UserInfo | null>(null);
  const [checking, setChecking] = useState(() => session.get() !== null);
  const [signedOutReason, setSignedOutReason] = useState<string | null>(null);
  const path = useRoute();

  const signOut = useCallback((reason: string | null = null) => {
    session.clear();
    setUser(null);
    setSignedOutReason(reason);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => signOut('The server no longer accepts this key (it was disabled, expired, rotated or deleted). Sign in again.'));
    // A reload keeps the tab's key: ask the server who it is again.
    const stored = session.get();
    if (!stored) return;
    request<UserInfo>('GET', '/userinfo')
      .then((r) => setUser(r.data))
      .catch((e) => signOut(e instanceof ApiError ? e.detail : null))
      .finally(() => setChecking(false));
  }, [signOut]);

  if (checking) return <p role="status">Checking the stored key…</p>;
  if (!user) {
    return (
      <SignIn
        reason={signedOutReason}
        onSignedIn={(u) => {
          setSignedOutReason(null);
          setUser(u);
        }}
      />
    );
  }
  const can: Can = (p) => grants(user.permissions, p);
  const section = '/' + (path.split('/')[1] ?? '');

  return (
    <>
      <a
        className="skip-link"
        href="#main"
        onClick={(e) => {
          // The hash names pages: move the focus without changing it.
          e.preventDefault();
          document.getElementById('main')?.focus();
        }}
      >
        Skip to content
      </a>
      <header className="top">
        <a className="brand" href={href('/keys')}>
          keyward console
        </a>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((n) => can(n.needs)).map((n) => (
              <li key={n.path}>
                <a href={href(n.path)} aria-current={section === n.path || (n.path === '/keys' && section === '/create') ? 'page' : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span>
            Signed in as <strong>{user.name}</strong> <span className="mono muted">{user.keyPrefix}…</span>
          </span>
          <button type="button" className="secondary" onClick={() => signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Route path={path} can={can} user={user} />
      </main>
    </>
  );
}

function Route({ path, can, user }: { path: string; can: Can; user: UserInfo }) {
  let m: Record<string, string> | null;
  if (match('/keys', path)) return <KeysPage can={can} />;
  if (match('/create', path)) return <CreateKeyPage can={can} />;
  if ((m = match('/keys/:id', path))) return <KeyPage id={m.id} can={can} self={user.id} />;
  if ((m = match('/keys/:id/history', path))) return <HistoryPage id={m.id} />;
  if ((m = match('/keys/:id/usage', path))) return <UsagePage keyId={m.id} can={can} />;
  if (match('/usage', path)) return <UsagePage can={can} />;
  if (match('/security-events', path)) return <SecurityEventsPage />;
  if (match('/roles', path)) return <RolesPage can={can} />;
  if ((m = match('/webhooks', path)) || (m = match('/webhooks/:id', path))) return <WebhooksPage can={can} selected={m.id} />;
  return (
    <Page title="Page not found">
      <p>
        There is no page at <code>{path}</code>. <a href={href('/keys')}>Go to the keys</a>.
      </p>
    </Page>
  );
}
