// The console's one way to the server: same-origin fetch with the key from sessionStorage in
// X-API-Key. Errors arrive as problem+json; ApiError carries the server's own detail so the
// page shows exactly what the server decided.
import type { Problem } from './types';

const STORAGE_KEY = 'keyward.apiKey';
const BASE = '/api/v1';

/** The key lives in this tab's sessionStorage only: never localStorage, a cookie or the URL. */
export const session = {
  get: (): string | null => sessionStorage.getItem(STORAGE_KEY),
  set: (key: string) => sessionStorage.setItem(STORAGE_KEY, key),
  clear: () => sessionStorage.removeItem(STORAGE_KEY),
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly problem?: Problem,
  ) {
    super(detail);
  }
}

export interface ApiResponse<T> {
  data: T;
  etag: string | null;
  status: number;
}

type Query = Record<string, string | number | boolean | undefined | null>;

export function queryString(query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** Told when the server refuses the stored key itself (401): the app signs out. */
let onUnauthorized: (() => void) | undefined;
export const setUnauthorizedHandler = (fn: () => void) => {
  onUnauthorized = fn;
};

export async function request<T>(
  method: string,
  path: string,
  opts: { body?: unknown; query?: Query; key?: string; ifMatch?: string | null } = {},
): Promise<ApiResponse<T>> {
  const key = opts.key ?? session.get();
  const headers: Record<string, string> = { accept: 'application/json' };
  if (key) headers['x-api-key'] = key;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.ifMatch) headers['if-match'] = opts.ifMatch;
  let res: Response;
  try {
    res = await fetch(`${BASE}${path}${queryString(opts.query)}`, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      // Same origin only, and never a cookie: the key header is the whole credential.
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'NETWORK', 'The server could not be reached. Check that it is running, then try again.');
  }
  const text = await res.text();
  const body = text ? safeJson(text) : undefined;
  if (!res.ok) {
    const problem = (body ?? {}) as Problem;
    const err = new ApiError(res.status, problem.code ?? `HTTP_${res.status}`, problem.detail ?? problem.title ?? `The server answered ${res.status}.`, problem);
    if (res.status === 401 && opts.key === undefined) onUnauthorized?.();
    throw err;
  }
  return { data: body as T, etag: res.headers.get('etag'), status: res.status };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export const api = {
  get: <T>(path: string, query?: Query) => request<T>('GET', path, { query }),
  post: <T>(path: string, body?: unknown, ifMatch?: string | null) => request<T>('POST', path, { body: body ?? {}, ifMatch }),
  patch: <T>(path: string, body: unknown, ifMatch?: string | null) => request<T>('PATCH', path, { body, ifMatch }),
  del: (path: string, query?: Query) => request<void>('DELETE', path, { query }),
};
