// Roles: the built-in ones are shown read-only; application roles (yours) can be created,
// edited and deleted by a key holding roles.write. The server keeps its rules (a role a key
// holds cannot be deleted, names are unique, the escalation guard): refusals show its detail.
import { useState } from 'react';
import { api } from '../api';
import { Dialog } from '../components/dialog';
import { ErrorMessage, Loading, Success } from '../components/feedback';
import { Page } from '../components/page';
import type { Can } from '../permissions';
import type { Role } from '../types';
import { useLoad } from '../use-load';

type Editing = null | { mode: 'create' } | { mode: 'edit'; role: Role } | { mode: 'delete'; role: Role };

export function RolesPage({ can }: { can: Can }) {
  const roles = useLoad(async () => (await api.get<Role[]>('/roles')).data, []);
  const [editing, setEditing] = useState<Editing>(null);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const writable = can('roles.write');

  const act = async (what: () => Promise<unknown>, message: string) => {
    setError(null);
    try {
      await what();
      setDone(message);
      setEditing(null);
      roles.reload();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <Page
      title="Roles"
      actions={
        writable ? (
          <button type="button" onClick={() => (setError(null), setEditing({ mode: 'create' }))}>
            Create a role
          </button>
        ) : null
      }
    >
      <p>Built-in roles grant keyward's own permissions and cannot be changed. Roles of your own grant your application's permissions (such as orders.read or orders.*) to keys that other services verify.</p>
      {done ? <Success>{done}</Success> : null}
      {!editing ? <ErrorMessage error={error} /> : null}
      <ErrorMessage error={roles.error} />
      {roles.loading && !roles.data ? <Loading what="roles" /> : null}
      {roles.data ? (
        <div className="table-wrap">
          <table>
            <caption>Every role, by id</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Kind</th>
                <th scope="col">Permissions</th>
                <th scope="col">Description</th>
                {writable ? <th scope="col">Actions</th> : null}
              </tr>
            </thead>
            <tbody>
              {roles.data.map((r) => (
                <tr key={r.id}>
                  <th scope="row">{r.name}</th>
                  <td>{r.builtIn ? 'Built-in (read-only)' : 'Application role'}</td>
                  <td className="mono">{r.permissions.join(', ') || '—'}</td>
                  <td>{r.description ?? '—'}</td>
                  {writable ? (
                    <td>
                      {r.builtIn ? (
                        <span className="muted">—</span>
                      ) : (
                        <div className="actions">
                          <button type="button" className="secondary" onClick={() => (setError(null), setEditing({ mode: 'edit', role: r }))}>
                            Edit<span className="visually-hidden"> {r.name}</span>
                          </button>
                          <button type="button" className="danger" onClick={() => (setError(null), setEditing({ mode: 'delete', role: r }))}>
                            Delete<span className="visually-hidden"> {r.name}</span>
                          </button>
                        </div>
                      )}
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Dialog title={editing?.mode === 'edit' ? 'Edit the role' : 'Create a role'} open={editing?.mode === 'create' || editing?.mode === 'edit'} onClose={() => setEditing(null)}>
        {editing?.mode === 'create' || editing?.mode === 'edit' ? (
          <RoleForm
            role={editing.mode === 'edit' ? editing.role : undefined}
            onSubmit={(body) =>
              editing.mode === 'edit'
                ? act(() => api.patch(`/roles/${editing.role.id}`, body), `Role ${body.name} saved.`)
                : act(() => api.post('/roles', body), `Role ${body.name} created.`)
            }
          />
        ) : null}
        <ErrorMessage error={error} />
      </Dialog>
      <Dialog title="Delete the role" open={editing?.mode === 'delete'} onClose={() => setEditing(null)}>
        {editing?.mode === 'delete' ? (
          <>
            <p>
              Delete the role <strong>{editing.role.name}</strong>? The server refuses while a key holds it.
            </p>
            <button type="button" className="danger" onClick={() => act(() => api.del(`/roles/${editing.role.id}`), `Role ${editing.role.name} deleted.`)}>
              Delete the role
            </button>
          </>
        ) : null}
        <ErrorMessage error={error} />
      </Dialog>
    </Page>
  );
}

function RoleForm({ role, onSubmit }: { role?: Role; onSubmit: (body: { name: string; description: string | null; permissions: string[] }) => void }) {
  const [name, setName] = useState(role?.name ?? '');
  const [description, setDescription] = useState(role?.description ?? '');
  const [permissions, setPermissions] = useState(role?.permissions.join('\n') ?? '');
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit({ name: name.trim(), description: description.trim() || null, permissions: permissions.split(/[\s,]+/).filter(Boolean) });
      }}
    >
      <div className="field">
        <label htmlFor="role-name">Name</label>
        <input id="role-name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor="role-description">Description</label>
        <input id="role-description" value={description} onChange={(e) => setDescription(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor="role-permissions">Permissions (one a line, such as orders.read or orders.*)</label>
        <textarea id="role-permissions" rows={4} className="mono" value={permissions} onChange={(e) => setPermissions(e.target.value)} />
      </div>
      <button type="submit">{role ? 'Save' : 'Create the role'}</button>
    </form>
  );
}
