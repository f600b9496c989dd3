// The command line's HTTP client: one base URL, one key, problem+json turned into CliError.
import type { ApiKeyView } from '../schemas/api-keys.js';
import type { RoleView } from '../schemas/roles.js';
import type { DeliveryView, WebhookView } from '../webhooks/schemas.js';

export type ApiKey = ApiKeyView;
export type CreatedApiKey = ApiKey & { key: string };
/** POST /apikeys/{id}/rotate: the key, its new secret, and until when the old one still works (null: not at all). */
export type RotatedApiKey = CreatedApiKey & { previousKeyPrefix: string | null; previousKeyExpiresAt: string | null };
export type Role = RoleView;
export type Webhook = WebhookView;
export type WebhookDelivery = DeliveryView;

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
  rotate(id: string, body: { gracePeriodSeconds?: number; changeReason?: string }): Promise<RotatedApiKey>;
  roles(): Promise<Role[]>;
  webhooks: {
    list(): Promise<Webhook[]>;
    create(body: { url: string; eventTypes: string[]; description?: string }): Promise<Webhook & { secret: string }>;
    test(id: string): Promise<WebhookDelivery>;
    deliveries(id: string, limit: number): Promise<WebhookDelivery[]>;
    remove(id: string): Promise<void>;
  };
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

  /** One request; `url` is a path under the base, or an absolute URL on the same origin (a next-page link). */
  async function send(method: string, target: string | URL, opts: { body?: unknown; query?: Record<string, string>; headers?: Record<string, string> } = {}) {
    const url = new URL(target, base);
    if (url.origin !== base.origin) throw new CliError(`the server pointed to another origin (${url.origin}); not sending the key there`);
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
        // Never follow a redirect: it would resend the key (and a DELETE) to wherever it points.
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      // Only the cause's code: an error's own message can quote a header value (the key).
      const cause = (err as { cause?: { code?: string } }).cause;
      const why = (err as Error).name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS / 1000} s` : (cause?.code ?? 'the request failed');
      throw new CliError(`cannot reach ${base.origin}: ${why}`);
    }
    const text = await res.text();
    if (res.status >= 300 && res.status < 400) {
      throw new CliError(`the server answered ${res.status} with a redirect to ${res.headers.get('location') ?? '(nowhere)'}; use that address as --url`);
    }
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
      // Exit 2 means "no such key", not "no such route" (a wrong --url is an error).
      throw new CliError(code ? `${detail} (${code})` : detail, code === 'API_KEY_NOT_FOUND' || code === 'WEBHOOK_NOT_FOUND' ? EXIT.NOT_FOUND : EXIT.ERROR);
    }
    return { res, body: text ? (JSON.parse(text) as unknown) : undefined };
  }

  const call = async <T>(method: string, path: string, opts?: Parameters<typeof send>[2]) => (await send(method, path, opts)).body as T;

  /** Every matching key: pages of 1,000 following `Link: <…>; rel="next"` (no 10,000 cap). */
  async function listAll(query: Record<string, string>): Promise<ApiKey[]> {
    const keys: ApiKey[] = [];
    let next: string | URL | null = 'api/v1/apikeys';
    let params: Record<string, string> | undefined = { ...query, limit: '1000' };
    while (next) {
      const { res, body } = await send('GET', next, { query: params });
      keys.push(...(body as ApiKey[]));
      const link = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '');
      next = link ? new URL(link[1], base) : null;
      params = undefined; // the link carries them
    }
    return keys;
  }

  const keyPath = (id: string) => `api/v1/apikeys/${encodeURIComponent(id)}`;
  const hookPath = (id: string) => `api/v1/webhooks/${encodeURIComponent(id)}`;
  return {
    list: ({ name, isEnabled }) =>
      listAll({ ...(name !== undefined ? { name } : {}), ...(isEnabled !== undefined ? { isEnabled: String(isEnabled) } : {}) }),
    get: (id) => call('GET', keyPath(id)),
    create: (body) => call('POST', 'api/v1/apikeys', { body }),
    patch: (id, body) => call('PATCH', keyPath(id), { body }),
    remove: (id, changeReason) =>
      call('DELETE', keyPath(id), {
        query: changeReason !== undefined ? { changeReason } : {},
        headers: { prefer: 'return=representation' },
      }),
    rotate: (id, body) => call('POST', `${keyPath(id)}/rotate`, { body }),
    roles: () => call('GET', 'api/v1/roles'),
    webhooks: {
      list: () => call('GET', 'api/v1/webhooks'),
      create: (body) => call('POST', 'api/v1/webhooks', { body }),
      test: (id) => call('POST', `${hookPath(id)}/test`),
      deliveries: (id, limit) => call('GET', `${hookPath(id)}/deliveries`, { query: { limit: String(limit) } }),
      remove: async (id) => {
        await send('DELETE', hookPath(id));
      },
    },
  };
}
