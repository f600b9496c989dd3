// Typed errors: each carries a stable machine code and an HTTP status. The error handler turns
// them (and every framework error) into RFC 9457 problem details.

export interface FieldError {
  field: string;
  message: string;
}

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

export class ValidationError extends AppError {
  constructor(errors: FieldError[], message = 'The request is invalid.') {
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
