// Route tables that check themselves: a test's table of routes against the routes the app
// really registered (test/helpers/app.ts records them), so a new route missing from the
// security table, the fuzz or the auth tests fails those tests instead of going unchecked.
import type { RegisteredRoute } from './app.js';

/** `/api/...` serves the same handlers as `/api/v1/...`. */
export const isAlias = (path: string) => path.startsWith('/api/') && !path.startsWith('/api/v1/');
const twinOf = (path: string) => `/api/v1/${path.slice('/api/'.length)}`;
/** The explorer's own pages and files (Swagger UI's). */
export const isExplorer = (path: string) => path === '/docs' || path.startsWith('/docs/');
/** The web console's page and files (test/console.test.ts checks them, in a browser too). */
export const isConsole = (path: string) => path === '/console' || path.startsWith('/console/');

/**
 * The registered routes a table does not list, as "METHOD /path". A HEAD route counts as
 * listed when its GET is and it is the one fastify made from it (the same handler and hooks);
 * an alias when its /api/v1 twin is listed and is protected the same way.
 */
export function missingRoutes(registered: RegisteredRoute[], table: Array<[method: string, path: string]>, ignore: (r: RegisteredRoute) => boolean = () => false): string[] {
  const listed = new Set(table.map(([m, p]) => `${m} ${p}`));
  const find = (method: string, path: string) => registered.find((r) => r.method === method && r.path === path);
  const has = (r: RegisteredRoute): boolean => {
    if (listed.has(`${r.method} ${r.path}`)) return true;
    if (isAlias(r.path)) {
      const twin = find(r.method, twinOf(r.path));
      return twin !== undefined && twin.authorizes === r.authorizes && has(twin);
    }
    return false;
  };
  const headOfGet = (r: RegisteredRoute) => {
    const get = find('GET', r.path);
    return r.method === 'HEAD' && get !== undefined && get.handler === r.handler && get.authorizes === r.authorizes && has(get);
  };
  return registered
    .filter((r) => !ignore(r))
    .filter((r) => !(has(r) || headOfGet(r)))
    .map((r) => `${r.method} ${r.path}`);
}
