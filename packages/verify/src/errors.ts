// What `verify` rejects with. Messages name keyward's address and status, never a presented key.

/** Base class of the errors `verify` rejects with. */
export class KeywardError extends Error {
  /** keyward's HTTP status, when it answered. */
  readonly status: number | undefined;
  /** keyward's problem code (`UNAUTHENTICATED`, `OVERLOADED`…), when it sent one. */
  readonly code: string | undefined;

  constructor(message: string, details: { status?: number | undefined; code?: string | undefined } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = details.status;
    this.code = details.code;
  }
}

/**
 * keyward could not be asked and nothing usable was cached: a connection error, a timeout, a 5xx,
 * a 429, or an answer that is not the protocol's. Refuse the request (503); never serve it.
 */
export class KeywardUnavailableError extends KeywardError {
  /** keyward's Retry-After, in seconds, when it sent one. */
  readonly retryAfterSeconds: number | undefined;

  constructor(message: string, details: { status?: number | undefined; code?: string | undefined; retryAfterSeconds?: number | undefined } = {}) {
    super(message, details);
    this.retryAfterSeconds = details.retryAfterSeconds;
  }
}

/**
 * keyward refused this service's own request (400, 401, 403, 404…): the consumer's API key is
 * wrong, lacks `apikeys.verify`, or the request is malformed. Retrying will not help.
 */
export class KeywardRequestError extends KeywardError {}
