// Typed errors: each carries a stable machine code and an HTTP status. The error handler turns
// them (and every framework error) into RFC 9457 problem details.

export interface FieldError {
  /** The field as the client wrote it: `name`, `roleIds[0]`, `If-Match`. */
  field: string;
  /** The rule it broke, as a phrase that follows the field name ("must be in the future"). */
  message: string;
  /** The whole sentence, when it is not simply "<field> <message>" (an unknown field). Not sent. */
  sentence?: string;
}

export const sentenceOf = (e: FieldError) => e.sentence ?? `${e.field} ${e.message}`;

export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: { headers?: Record<string, string>; errors?: FieldError[] } = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** 400 VALIDATION_FAILED; without a message of its own, the detail lists every field's sentence. */
export class ValidationError extends AppError {
  constructor(errors: FieldError[], message = errors.map(sentenceOf).join('; ') || 'The request is invalid.') {
    super(400, 'VALIDATION_FAILED', message, { errors });
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'The requested resource was not found.', code = 'NOT_FOUND') {
    super(404, code, message);
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(message = 'The service is temporarily unavailable.', retryAfterSeconds = 5) {
    super(503, 'SERVICE_UNAVAILABLE', message, { headers: { 'retry-after': String(retryAfterSeconds) } });
  }
}
