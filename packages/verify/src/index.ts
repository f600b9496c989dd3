// @keyward/verify: ask keyward whether a presented API key may be served, with a cache that is
// trusted only while keyward's event stream says nothing has changed.
export { createVerifier, DEFAULTS } from './verifier.js';
export type { DigestMemo, ResolvedVerifierOptions, StreamState, Verifier, VerifierOptions, VerifierStats, VerifyCode, VerifyOptions, VerifyRateLimit, VerifyResult, VerifyRole } from './verifier.js';
export { KeywardError, KeywardRequestError, KeywardUnavailableError } from './errors.js';
export { grants, isPermissionName, missingPermissions } from './permissions.js';
export { keywardMiddleware } from './middleware.js';
export type { KeywardMiddleware, KeywardMiddlewareOptions, KeywardRequest } from './middleware.js';
export { presentedKeyOf, refusalFor, refusalForError, PROBLEM_CONTENT_TYPE } from './http.js';
export type { ProblemBody, ProblemCode, Refusal } from './http.js';
