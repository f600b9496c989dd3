// A PostgreSQL URL as pg's discrete connection fields, shared by the migrations and the
// listener.
import { parse as parseConnectionString } from 'pg-connection-string';

/** pg config as discrete fields: the adapter's shadow database replaces `database`, which a
 *  connection string would silently override. */
export function pgConfigFromUrl(url: string) {
  const c = parseConnectionString(url);
  return {
    host: c.host ?? undefined,
    port: c.port ? Number(c.port) : undefined,
    user: c.user,
    password: c.password,
    database: c.database ?? undefined,
    ssl: c.ssl as never,
    connectionTimeoutMillis: 10_000,
  };
}
