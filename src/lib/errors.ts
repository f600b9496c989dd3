// The one catalogue of error codes: every code keyward answers with, its HTTP status and its
// default detail (and, where the document shows something more telling, an example). The error
// classes, the problem bodies, the OpenAPI examples and the security-event reasons all come from
// it. The error handler turns an AppError (and every framework error) into RFC 9457 problem details.

export interface FieldError {
  /** The field as the client wrote it: `name`, `roleIds[0]`, `If-Match`. */
  field: string;
  /** The rule it broke, as a phrase that follows the field name ("must be in the future"). */
  message: string;
  /** The whole sentence, when it is not simply "<field> <message>" (an unknown field). Not sent. */
  sentence?: string;
}

export const sentenceOf = (e: FieldError) => e.sentence ?? `${e.field} ${e.message}`;

interface Entry {
  status: number;
  detail: string;
  /** What the OpenAPI document shows, when not the default detail. */
  example?: string;
  exampleErrors?: FieldError[];
  /** Counted in security events (failed authentications, and refusals before a key was checked). */
  securityEvent?: true;
  /** Seconds a client should wait before trying again (Retry-After), when it is always the same. */
  retryAfter?: number;
}

export const ERROR_CATALOGUE = {
  VALIDATION_FAILED: {
    status: 400,
    detail: 'The request is invalid.',
    example: 'name is required; expiresAt must be in the future',
    exampleErrors: [
      { field: 'name', message: 'is required' },
      { field: 'expiresAt', message: 'must be in the future' },
    ],
  },
  MALFORMED_JSON: { status: 400, detail: 'The request body is not valid JSON.' },
  BAD_REQUEST: { status: 400, detail: 'The request could not be processed.' },
  UNAUTHENTICATED: { status: 401, detail: 'An API key is required: send it in the X-API-Key header (or Authorization: Bearer).', securityEvent: true },
  API_KEY_INVALID: { status: 401, detail: 'The API key is invalid.', securityEvent: true },
  API_KEY_DISABLED: { status: 401, detail: 'The API key is disabled.', securityEvent: true },
  API_KEY_EXPIRED: { status: 401, detail: 'The API key has expired.', securityEvent: true },
  FORBIDDEN: {
    status: 403,
    detail: 'Your key does not have a permission this needs.',
    example: 'This requires the apikeys.write permission, which your key does not have.',
  },
  NOT_FOUND: { status: 404, detail: 'The requested resource was not found.' },
  API_KEY_NOT_FOUND: { status: 404, detail: 'API key not found.' },
  VERSION_NOT_FOUND: { status: 404, detail: 'The key has no such version.' },
  ROLE_NOT_FOUND: { status: 404, detail: 'Role not found.' },
  WEBHOOK_NOT_FOUND: { status: 404, detail: 'Webhook subscription not found.' },
  METHOD_NOT_ALLOWED: { status: 405, detail: 'This method is not allowed here.' },
  REQUEST_TIMEOUT: { status: 408, detail: 'The request did not arrive in time.' },
  API_KEY_NOT_ROTATABLE: {
    status: 409,
    detail: 'Disabled and expired keys cannot be rotated.',
    example: 'The key is disabled: enable it first, or create a new key.',
  },
  IP_NOT_ALLOWED: {
    status: 403,
    detail: 'This API key may not be used from your address.',
    example: 'This API key may not be used from 198.51.100.7: it is limited to the address blocks in its allowedCidrs.',
    securityEvent: true,
  },
  ROLE_BUILT_IN: { status: 409, detail: 'Built-in roles cannot be changed or deleted.', example: 'Operator is a built-in role: it cannot be changed or deleted. Create a role of your own instead.' },
  ROLE_IN_USE: { status: 409, detail: 'Keys still hold this role.', example: '3 keys hold this role: remove it from them first (PATCH their roleIds).' },
  ROLE_NAME_TAKEN: { status: 409, detail: 'Another role already has this name.', example: 'A role named "orders-reader" already exists (id 101); role names are unique, whatever their case.' },
  PRECONDITION_FAILED: {
    status: 412,
    detail: 'The key has changed since it was read (If-Match does not match its ETag).',
    example: 'The key has changed since the ETag you sent.',
  },
  PAYLOAD_TOO_LARGE: { status: 413, detail: 'The request body is larger than the limit.' },
  URI_TOO_LONG: { status: 414, detail: 'The request URL is too long.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, detail: 'The request body must be application/json.' },
  RATE_LIMITED: { status: 429, detail: 'Too many requests; retry later.', example: 'Too many requests for this API key; retry in 12 s.', securityEvent: true },
  HEADERS_TOO_LARGE: { status: 431, detail: 'The request headers are too large.' },
  INTERNAL_ERROR: { status: 500, detail: 'An unexpected error occurred.' },
  SERVICE_UNAVAILABLE: { status: 503, detail: 'The database is unavailable; retry shortly.', retryAfter: 2 },
  DATABASE_UNAVAILABLE: { status: 503, detail: 'The database did not answer in time.', retryAfter: 5 },
  WEBHOOKS_NOT_CONFIGURED: {
    status: 503,
    detail: 'Webhooks are off on this server: it has no WEBHOOK_SECRET_KEY to encrypt their signing secrets with (set it to 32 random bytes, e.g. openssl rand -base64 32, and restart).',
  },
  CONSOLE_NOT_BUILT: {
    status: 503,
    detail: 'The web console has not been built on this server: run npm run build (npm start builds it too), then reload.',
  },
  OVERLOADED: { status: 503, detail: 'Too many key verifications are in progress; retry shortly.', retryAfter: 1 },
  SHUTTING_DOWN: { status: 503, detail: 'The server is shutting down; retry on another instance.', retryAfter: 1 },
} as const satisfies Record<string, Entry>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;
export const entryOf = (code: ErrorCode): Entry => ERROR_CATALOGUE[code];
export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_CATALOGUE, code);

/** The reasons a security event can record, in catalogue order. */
export const SECURITY_EVENT_REASONS = (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).filter((c) => 'securityEvent' in ERROR_CATALOGUE[c]) as [
  ErrorCode,
  ...ErrorCode[],
];

/** The codes of a 401: why a key did not authenticate. */
export type AuthCode = 'UNAUTHENTICATED' | 'API_KEY_INVALID' | 'API_KEY_DISABLED' | 'API_KEY_EXPIRED';

/** An error with a code from the catalogue; its status comes from there. */
export class AppError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    detail: string = ERROR_CATALOGUE[code].detail,
    /** What the response carries besides the problem: headers (WWW-Authenticate…) and field errors. */
    readonly response: { headers?: Record<string, string>; errors?: FieldError[] } = {},
  ) {
    // An expected refusal, answered as its code says: its stack would never be read, and
    // capturing one is most of the cost of refusing a flood of guesses.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(detail);
    Error.stackTraceLimit = limit;
    this.name = new.target.name;
    this.status = ERROR_CATALOGUE[code].status;
  }
}

/** 400 VALIDATION_FAILED; without a message of its own, the detail lists every field's sentence. */
export class ValidationError extends AppError {
  constructor(errors: FieldError[], message = errors.map(sentenceOf).join('; ') || ERROR_CATALOGUE.VALIDATION_FAILED.detail) {
    super('VALIDATION_FAILED', message, { errors });
  }
}

/** A 401, with the WWW-Authenticate challenge RFC 9110 asks for. */
export class AuthError extends AppError {
  /** The presented key's prefix, when it matched a stored key (for security events only). */
  matchedPrefix?: string;
  /** What the security event records when it is not the code (RATE_LIMITED: refused before argon2). */
  eventReason?: ErrorCode;

  constructor(
    readonly authCode: AuthCode,
    detail: string = ERROR_CATALOGUE[authCode].detail,
  ) {
    const bearer = authCode === 'UNAUTHENTICATED' ? 'Bearer realm="keyward"' : 'Bearer realm="keyward", error="invalid_token"';
    super(authCode, detail, { headers: { 'www-authenticate': `ApiKey realm="keyward", header="X-API-Key", ${bearer}` } });
  }
}

/** A 429: `what` names the budget that ran out ("requests for this API key"). */
export class RateLimitedError extends AppError {
  /** The presented key's prefix, when it matched a stored key (for security events only). */
  matchedPrefix?: string;
  /** The 429 of an address's failure budget (a failed authentication), not of a key's own limit. */
  fromFailureBudget?: boolean;

  constructor(retryAfter: number, headers: Record<string, string>, what: string) {
    super('RATE_LIMITED', `Too many ${what}; retry in ${retryAfter} s.`, { headers: { ...headers, 'retry-after': String(retryAfter) } });
  }
}

/** The 503 of a full argon2 queue: come back in a second (the catalogue's Retry-After). */
export const overloaded = () => new AppError('OVERLOADED');
