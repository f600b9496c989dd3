// What the server said, shown as it said it: its problem detail (and each field's message), in a
// live region so screen readers announce it.
import type { ReactNode } from 'react';
import { ApiError } from '../api';

export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : null;
  return (
    <div className="notice error" role="alert">
      <p>
        <strong>{e ? errorTitle(e) : 'Something went wrong'}:</strong> {e ? e.detail : String((error as Error).message ?? error)}
      </p>
      {e?.problem?.errors?.length ? (
        <ul>
          {e.problem.errors.map((f) => (
            <li key={f.field + f.message}>
              <code>{f.field}</code> {f.message}
            </li>
          ))}
        </ul>
      ) : null}
      {e?.code ? <p className="muted">Code {e.code}{e.status ? `, HTTP ${e.status}` : ''}</p> : null}
    </div>
  );
}

function errorTitle(e: ApiError): string {
  if (e.status === 403) return 'Not allowed';
  if (e.status === 404) return 'Not found';
  if (e.status === 409 || e.status === 412) return 'Conflict';
  if (e.status === 400) return 'Invalid input';
  if (e.status === 0) return 'Offline';
  return 'The server refused';
}

export function Success({ children }: { children: ReactNode }) {
  return (
    <div className="notice success" role="status">
      {children}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p role="status" className="muted">
      Loading {what}…
    </p>
  );
}
