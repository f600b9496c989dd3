// Route tables that check themselves: a test's table of routes against the routes the app
// really registered (test/helpers/app.ts records them), so a new route missing from the
// security table, the fuzz or the auth tests fails those tests instead of going unchecked.
import type { RegisteredRoute } from './app.js';

/** `/api/...` serves the same handlers as `/api/v1/...`. */
export const isAlias = (path: string) => path.startsWith('/api/') && !path.startsWith('/api/v1/');
const twinOf = (path: string) => `/api/v1/${path.slice('/api/'.length)}`;
/** The explorer's own pages and files (Swagger UI's). */
export const isExplorer = (path: string) => path === '/docs' || path.startsWith('/docs/');

/**
 * The registered routes a table does not list, as "METHOD /path". A HEAD route counts as
 * listed when its GET is (fastify adds one for each), an alias when its /api/v1 twin is.
 */
export function missingRoutes(registered: RegisteredRoute[], table: Array<[method: string, path: string]>, ignore: (r: RegisteredRoute) => boolean = () => false): string[] {
  const listed = new Set(table.map(([m, p]) => `${m} ${p}`));
  const has = (method: string, path: string) => listed.has(`${method} ${path}`) || (isAlias(path) && listed.has(`${method} ${twinOf(path)}`));
  return registered
    .filter((r) => !ignore(r))
    .filter((r) => !(has(r.method, r.path) || (r.method === 'HEAD' && has('GET', r.path))))
    .map((r) => `${r.method} ${r.path}`);
}
