// The command line's HTTP client: one base URL, one key, problem+json turned into CliError.
import type { ApiKeyView, RoleView } from '../schemas/api-keys.js';

export type ApiKey = ApiKeyView;
export type CreatedApiKey = ApiKey & { key: string };
export type Role = RoleView;

/** Exit codes: 0 ok, 1 error, 2 not found, 3 usage. */
export const EXIT = { OK: 0, ERROR: 1, NOT_FOUND: 2, USAGE: 3 } as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.ERROR,
  ) {
    super(message);
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.USAGE);
  }
}

export interface Client {
  list(query: { name?: string; isEnabled?: boolean }): Promise<ApiKey[]>;
  get(id: string): Promise<ApiKey>;
  create(body: Record<string, unknown>): Promise<CreatedApiKey>;
  patch(id: string, body: Record<string, unknown>): Promise<ApiKey>;
  remove(id: string, changeReason?: string): Promise<ApiKey>;
  roles(): Promise<Role[]>;
}

const TIMEOUT_MS = 30_000;

export function createClient(baseUrl: string, apiKey: string): Client {
  let base: URL;
  try {
    base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error();
  } catch {
    throw new UsageError(`not an http(s) URL: ${baseUrl}`);
  }

  async function call<T>(method: string, path: string, opts: { body?: unknown; query?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<T> {
    const url = new URL(path, base);
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          'x-api-key': apiKey,
          accept: 'application/json',
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        },
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`cannot reach ${base.origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      let detail = `${res.status} ${res.statusText}`;
      let code: string | undefined;
      try {
        const problem = JSON.parse(text) as { detail?: string; code?: string };
        if (problem.detail) detail = problem.detail;
        code = problem.code;
      } catch {
        // not problem+json (a proxy's page): keep the status line
      }
      throw new CliError(code ? `${detail} (${code})` : detail, res.status === 404 ? EXIT.NOT_FOUND : EXIT.ERROR);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  const keyPath = (id: string) => `api/v1/apikeys/${encodeURIComponent(id)}`;
  return {
    list: ({ name, isEnabled }) =>
      call('GET', 'api/v1/apikeys', {
        query: { ...(name !== undefined ? { name } : {}), ...(isEnabled !== undefined ? { isEnabled: String(isEnabled) } : {}) },
      }),
    get: (id) => call('GET', keyPath(id)),
    create: (body) => call('POST', 'api/v1/apikeys', { body }),
    patch: (id, body) => call('PATCH', keyPath(id), { body }),
    remove: (id, changeReason) =>
      call('DELETE', keyPath(id), {
        query: changeReason !== undefined ? { changeReason } : {},
        headers: { prefer: 'return=representation' },
      }),
    roles: () => call('GET', 'api/v1/roles'),
  };
}
