// JIM's PowerShell module (TetronIO/JIM src/JIM.PowerShell, v0.14.0) as it behaves on the wire:
// the requests its cmdlets build, serialised the way PowerShell 7 serialises them, sent over a
// raw keep-alive socket as .NET's HttpClient sends them. No PowerShell runs here (none can be
// installed from these machines' registries), so the rules below are PowerShell's, written down:
//
// - Invoke-JIMApi sends `Accept: application/json`, `X-API-Key` and `-ContentType
//   'application/json'` (no charset) on every call, GET and body-less DELETE included.
// - Bodies are `$hashtable | ConvertTo-Json -Depth 10`: two-space indentation, the platform's
//   line ends (CRLF on Windows), keys in hashtable order (arbitrary), `[]` for an empty array.
// - A hashtable value that is an `if` statement is the statement's *output*, and PowerShell
//   unrolls output: an array of one element becomes that element, an empty one becomes $null.
// - Dates in responses are parsed into [datetime] (local time, or UTC) and re-serialised by
//   ConvertTo-Json as ISO 8601 with a trimmed fraction and the offset (`…15:30:00.123+05:30`,
//   `…10:00:00.12Z`); `$date.ToUniversalTime().ToString('o')` gives seven digits and `Z`.
import net from 'node:net';

export type DateStyle = { kind: 'local'; offsetMinutes: number } | { kind: 'utc' };

/** A [datetime] PowerShell holds: an instant and how ConvertTo-Json will write it. */
export class PsDate {
  constructor(
    readonly ms: number,
    readonly style: DateStyle,
  ) {}

  /** How ConvertTo-Json writes it: `yyyy-MM-ddTHH:mm:ss.FFFFFFFK` (fraction trimmed, or absent). */
  toJSON(): string {
    const offset = this.style.kind === 'local' ? this.style.offsetMinutes : 0;
    const wall = new Date(this.ms + offset * 60_000).toISOString(); // the wall time, written as if UTC
    const fraction = wall.slice(19, 23).replace(/\.?0+$/, '');
    const zone =
      this.style.kind === 'utc'
        ? 'Z'
        : `${offset < 0 ? '-' : '+'}${String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0')}:${String(Math.abs(offset) % 60).padStart(2, '0')}`;
    return `${wall.slice(0, 19)}${fraction}${zone}`;
  }
}

/** `$date.ToUniversalTime().ToString('o')`: seven fractional digits and Z. */
export const roundTripFormat = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z');

/** What the output of a statement becomes when PowerShell collects it: arrays of 0 or 1 unroll. */
export function unrolled(values: unknown[]): unknown {
  if (values.length === 0) return null;
  if (values.length === 1) return values[0];
  return values;
}

let order = 0;
/** Hashtable enumeration order is the hash buckets': arbitrary, and not the order written. */
function hashtableOrder(keys: string[]): string[] {
  const seed = ++order;
  return [...keys].sort((a, b) => ((hash(a) ^ seed) % 97) - ((hash(b) ^ seed) % 97) || a.localeCompare(b));
}
const hash = (s: string) => [...s].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);

/** `ConvertTo-Json -Depth 10` of a hashtable (PowerShell 7: Newtonsoft, indented by two). */
export function convertToJson(value: unknown, newline = '\r\n', indent = ''): string {
  const inner = `${indent}  `;
  if (value instanceof PsDate) return JSON.stringify(value.toJSON());
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return `[${newline}${value.map((v) => inner + convertToJson(v, newline, inner)).join(`,${newline}`)}${newline}${indent}]`;
  }
  if (value && typeof value === 'object') {
    const keys = hashtableOrder(Object.keys(value));
    if (!keys.length) return '{}';
    const entries = keys.map((k) => `${inner}${JSON.stringify(k)}: ${convertToJson((value as Record<string, unknown>)[k], newline, inner)}`);
    return `{${newline}${entries.join(`,${newline}`)}${newline}${indent}}`;
  }
  return JSON.stringify(value ?? null);
}

/** `[Uri]::EscapeDataString`: everything but RFC 3986's unreserved characters, as UTF-8. */
export const escapeDataString = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export interface WireResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  json(): any;
}

export interface WireRequest {
  method: string;
  path: string;
  head: string;
  body: string;
}

/**
 * One HttpClient connection, reused as .NET reuses it: requests in turn on one socket, each
 * response read to its Content-Length. Every request is kept for the test to look at.
 */
export class PsConnection {
  readonly sent: WireRequest[] = [];
  private socket: net.Socket | undefined;
  private buffer = Buffer.alloc(0);
  private waiting: (() => void) | undefined;

  constructor(
    readonly port: number,
    readonly apiKey: string,
    readonly newline: '\r\n' | '\n' = '\r\n',
  ) {}

  private async connect(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = net.connect({ host: '127.0.0.1', port: this.port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    this.buffer = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.waiting?.();
    });
    socket.on('close', () => this.waiting?.());
    this.socket = socket;
    return socket;
  }

  private async readResponse(socket: net.Socket, method: string): Promise<WireResponse> {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.buffer.subarray(0, end).toString('latin1');
        const [statusLine, ...lines] = head.split('\r\n');
        const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        const status = Number(statusLine.split(' ')[1]);
        if (headers['transfer-encoding']) throw new Error('chunked responses are not expected from this server');
        const length = status === 204 || status === 304 || method === 'HEAD' ? 0 : Number(headers['content-length'] ?? 0);
        if (this.buffer.length >= end + 4 + length) {
          const text = this.buffer.subarray(end + 4, end + 4 + length).toString('utf8');
          this.buffer = this.buffer.subarray(end + 4 + length);
          if (headers.connection === 'close') socket.destroy();
          return { status, headers, text, json: () => JSON.parse(text) };
        }
      }
      if (socket.destroyed) throw new Error(`connection closed before a complete response (${this.buffer.length} bytes)`);
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = undefined;
    }
  }

  /**
   * Invoke-RestMethod as Invoke-JIMApi calls it. `body`, when given, is the hashtable; it goes
   * through ConvertTo-Json. Without one, a body-less request still carries the content type
   * (with `Content-Length: 0`, or no length at all when `lengthless`).
   */
  async invoke(method: string, path: string, body?: Record<string, unknown>, opts: { lengthless?: boolean } = {}): Promise<WireResponse> {
    const socket = await this.connect();
    const text = body === undefined ? '' : convertToJson(body, this.newline);
    const bytes = Buffer.from(text, 'utf8');
    const headers = [
      `Host: 127.0.0.1:${this.port}`,
      'Accept: application/json',
      `X-API-Key: ${this.apiKey}`,
      'User-Agent: Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.26100; en-GB) PowerShell/7.4.6',
      'Content-Type: application/json',
      ...(opts.lengthless && !bytes.length ? [] : [`Content-Length: ${bytes.length}`]),
    ];
    const head = `${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`;
    this.sent.push({ method, path, head, body: text });
    socket.write(Buffer.concat([Buffer.from(head, 'latin1'), bytes]));
    return this.readResponse(socket, method);
  }

  close() {
    this.socket?.destroy();
  }
}

/** The text Invoke-JIMApi throws for an error response: what the person at the prompt reads. */
export function jimErrorText(res: WireResponse): string {
  let message = res.text;
  try {
    const body = JSON.parse(res.text);
    message = body.message ?? body.Message ?? res.text;
    const details = Object.entries((body.validationErrors ?? {}) as Record<string, string[]>).flatMap(([field, msgs]) => msgs.map((m) => `  - ${field}: ${m}`));
    if (details.length) message = `${message}\n${details.join('\n')}`;
  } catch {
    // shown raw
  }
  if (res.status === 401) return 'Authentication failed. Your API key may be invalid or expired. Use Connect-JIM to reconnect.';
  if (res.status === 403) return 'Access denied. You are authenticated but not authorised to perform this operation.';
  if (res.status === 404) return `Resource not found: ${message}`;
  return `JIM API error (${res.status}): ${message}`;
}

/** A failed call, as the cmdlet's `catch` sees it. */
export class JimApiError extends Error {
  constructor(readonly response: WireResponse) {
    super(jimErrorText(response));
  }
}

/** ConvertFrom-Json of one of our key objects: dates become [datetime] in the client's style. */
export interface PsKey {
  id: string;
  name: string;
  description: string | null;
  roles: Array<{ id: number; name: string }>;
  isEnabled: boolean;
  expiresAt: PsDate | null;
  createdAt: PsDate | null;
  updatedAt: PsDate | null;
  lastUsedAt: PsDate | null;
  [field: string]: unknown;
}

export function parsedKey(raw: Record<string, any>, style: DateStyle): PsKey {
  const date = (v: string | null) => (v === null ? null : new PsDate(Date.parse(v), style));
  return { ...raw, expiresAt: date(raw.expiresAt), createdAt: date(raw.createdAt), updatedAt: date(raw.updatedAt), lastUsedAt: date(raw.lastUsedAt) } as PsKey;
}

/** The module's cmdlets, one PowerShell session connected to one server. */
export class JimModule {
  constructor(
    readonly http: PsConnection,
    readonly dates: DateStyle = { kind: 'local', offsetMinutes: 330 },
  ) {}

  private async call(method: string, path: string, body?: Record<string, unknown>, opts?: { lengthless?: boolean }) {
    const res = await this.http.invoke(method, path, body, opts);
    if (res.status >= 400) throw new JimApiError(res);
    return res;
  }

  /** Connect-JIM -ApiKey: GET /health (status), then GET /health/version (version; failures ignored). */
  async connect() {
    const health = (await this.call('GET', '/api/v1/health')).json();
    let version: string | null;
    try {
      version = (await this.call('GET', '/api/v1/health/version')).json().version ?? null;
    } catch {
      version = null;
    }
    return { status: health.status ?? 'Connected', serverVersion: version };
  }

  /** Get-JIMApiKey -Id */
  async get(id: string) {
    return parsedKey((await this.call('GET', `/api/v1/apikeys/${id}`)).json(), this.dates);
  }

  /** Get-JIMApiKey [-Name pattern]: the whole list, filtered on the client with -like. */
  async list(name?: string) {
    const all = ((await this.call('GET', '/api/v1/apikeys')).json() as Array<Record<string, any>>).map((k) => parsedKey(k, this.dates));
    if (!name) return all;
    const like = new RegExp(`^${name.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
    return all.filter((k) => like.test(k.name));
  }

  /** New-JIMApiKey: name and roleIds always (an int[] variable: never unrolled). */
  async new(p: { name: string; description?: string; roleIds?: number[]; expiresAt?: number; changeReason?: string }) {
    const body: Record<string, unknown> = { name: p.name, roleIds: p.roleIds ?? [] };
    if (p.description) body.description = p.description;
    if (p.expiresAt !== undefined) body.expiresAt = roundTripFormat(p.expiresAt);
    if (p.changeReason) body.changeReason = p.changeReason;
    return (await this.call('POST', '/api/v1/apikeys', body)).json();
  }

  /** Set-JIMApiKey: GET, merge what was given into what came back, PUT the whole. */
  async set(
    id: string,
    p: { name?: string; description?: string; roleIds?: number[]; expiresAt?: number | null; enable?: boolean; disable?: boolean; changeReason?: string } = {},
  ) {
    if (p.enable && p.disable) throw new Error('Cannot specify both -Enable and -Disable');
    const existing = await this.get(id);
    const body: Record<string, unknown> = {
      name: p.name ? p.name : existing.name,
      description: p.description !== undefined ? p.description : existing.description,
      // roleIds = if (...) { $RoleIds } else { @($existing.roles | ForEach-Object { $_.id }) }
      roleIds: unrolled(p.roleIds !== undefined ? p.roleIds : existing.roles.map((r: { id: number }) => r.id)),
      isEnabled: existing.isEnabled,
    };
    if (p.expiresAt !== undefined) body.expiresAt = p.expiresAt === null ? null : roundTripFormat(p.expiresAt);
    else body.expiresAt = existing.expiresAt;
    if (p.enable) body.isEnabled = true;
    else if (p.disable) body.isEnabled = false;
    if (p.changeReason) body.changeReason = p.changeReason;
    return (await this.call('PUT', `/api/v1/apikeys/${id}`, body)).json();
  }

  /** Remove-JIMApiKey -Force: GET (any failure is "API Key not found"), then DELETE ?changeReason=. */
  async remove(id: string, p: { changeReason?: string; lengthless?: boolean } = {}) {
    let existing;
    try {
      existing = await this.get(id);
    } catch {
      throw new Error(`API Key not found: ${id}`);
    }
    const query = p.changeReason ? `?changeReason=${escapeDataString(p.changeReason)}` : '';
    const res = await this.call('DELETE', `/api/v1/apikeys/${id}${query}`, undefined, { lengthless: p.lengthless });
    return { existing, response: res };
  }
}
