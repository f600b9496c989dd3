// Authenticates a presented key. Order of checks: format → prefix lookup → argon2 → enabled →
// expiry. Malformed, unknown and wrong-secret keys are indistinguishable to the caller; disabled
// and expired are told apart only after the secret verified.
import type { FastifyBaseLogger } from 'fastify';
import type { PrismaClient } from '../generated/prisma/client.js';
import { AppError } from '../lib/errors.js';
import type { LastUsedRecorder } from '../services/last-used.js';
import type { KeyHasher } from './hasher.js';
import { isWellFormedKey, keyPrefixOf } from './key-format.js';
import { effectivePermissions } from './permissions.js';

export interface Principal {
  id: string;
  name: string;
  keyPrefix: string;
  roles: Array<{ id: number; name: string }>;
  permissions: Set<string>;
  isInfrastructureKey: boolean;
}

export type AuthCode = 'UNAUTHENTICATED' | 'API_KEY_INVALID' | 'API_KEY_DISABLED' | 'API_KEY_EXPIRED';

const MESSAGES: Record<AuthCode, string> = {
  UNAUTHENTICATED: 'An API key is required: send it in the X-API-Key header (or Authorization: Bearer).',
  API_KEY_INVALID: 'The API key is invalid.',
  API_KEY_DISABLED: 'The API key is disabled.',
  API_KEY_EXPIRED: 'The API key has expired.',
};

export class AuthError extends AppError {
  constructor(
    readonly authCode: AuthCode,
    detail = MESSAGES[authCode],
  ) {
    const bearer = authCode === 'UNAUTHENTICATED' ? 'Bearer realm="keyward"' : 'Bearer realm="keyward", error="invalid_token"';
    super(401, authCode, detail, { headers: { 'www-authenticate': `ApiKey realm="keyward", header="X-API-Key", ${bearer}` } });
  }
}

export function createAuthenticator(deps: {
  prisma: PrismaClient;
  hasher: KeyHasher;
  lastUsed: LastUsedRecorder;
  log: FastifyBaseLogger;
  now?: () => Date;
}) {
  const { prisma, hasher, lastUsed, log } = deps;
  const now = deps.now ?? (() => new Date());

  /** Rehash with the configured parameters after a successful use; never blocks the request. */
  function rehashLater(id: string, oldHash: string, secret: string) {
    void hasher
      .hash(secret)
      .then((hash) => prisma.apiKey.updateMany({ where: { id, hash: oldHash }, data: { hash } }))
      .catch((err) => log.warn({ err, keyId: id }, 'rehash failed'));
  }

  return {
    async authenticate(presented: string, ip: string): Promise<Principal> {
      if (!isWellFormedKey(presented)) throw new AuthError('API_KEY_INVALID');
      const candidates = await prisma.apiKey.findMany({
        where: { keyPrefix: keyPrefixOf(presented) },
        include: { roles: { include: { role: true }, orderBy: { roleId: 'asc' } } },
      });
      let match: (typeof candidates)[number] | undefined;
      for (const row of candidates) {
        if (await hasher.verify(row.hash, presented)) {
          match = row;
          break;
        }
      }
      if (!match) throw new AuthError('API_KEY_INVALID');
      if (!match.isEnabled) throw new AuthError('API_KEY_DISABLED');
      if (match.expiresAt && match.expiresAt.getTime() <= now().getTime()) throw new AuthError('API_KEY_EXPIRED');

      lastUsed.touch(match.id, ip);
      if (hasher.needsRehash(match.hash)) rehashLater(match.id, match.hash, presented);
      return {
        id: match.id,
        name: match.name,
        keyPrefix: match.keyPrefix,
        roles: match.roles.map((r) => ({ id: r.role.id, name: r.role.name })),
        permissions: effectivePermissions(match.roles.map((r) => r.role.permissions)),
        isInfrastructureKey: match.isInfrastructureKey,
      };
    },
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;

/**
 * The key a request carries: `X-API-Key` (JIM) or `Authorization: Bearer`. Returns null when
 * none is sent; throws when the two disagree or a header is repeated.
 */
export function presentedKey(headers: Record<string, string | string[] | undefined>): string | null {
  const apiKey = headers['x-api-key'];
  const authorization = headers.authorization;
  if (Array.isArray(apiKey) || Array.isArray(authorization)) {
    throw new AuthError('API_KEY_INVALID', 'Send one API key, once.');
  }
  let bearer: string | undefined;
  if (authorization !== undefined) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (!m) {
      if (apiKey === undefined) {
        throw new AuthError('UNAUTHENTICATED', 'Only Bearer authorization is supported: send the API key as X-API-Key or Authorization: Bearer <key>.');
      }
    } else {
      bearer = m[1];
    }
  }
  const key = apiKey?.trim();
  if (key !== undefined && bearer !== undefined && key !== bearer) {
    throw new AuthError('API_KEY_INVALID', 'X-API-Key and Authorization carry different keys.');
  }
  const found = key ?? bearer;
  return found === undefined || found === '' ? null : found;
}
