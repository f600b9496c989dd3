// JIM_INFRASTRUCTURE_API_KEY: at start-up, make sure a key with that secret exists (an
// Administrator key valid for 24 h), once per secret ever — a deleted one is not re-created.
// Several instances starting together create one: the work runs under an advisory lock.
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { KeyHasher } from '../auth/hasher.js';
import { isWellFormedKey, keyPrefixOf } from '../auth/key-format.js';
import type { PrismaClient } from '../generated/prisma/client.js';
import { withinDeadline } from '../lib/deadline.js';
import { createKeyStore, type KeyStore } from '../store/api-keys.js';
import { SYSTEM_ACTOR, type ApiKeyService } from './api-keys.js';

const BOOTSTRAP_LOCK_KEY = 0x6b657962; // "keyb"
const ADMINISTRATOR_ROLE_ID = 1;
const INFRASTRUCTURE_TTL_MS = 24 * 60 * 60 * 1000;

export type BootstrapOutcome = 'not-configured' | 'malformed' | 'created' | 'exists' | 'previously-bootstrapped';

export async function bootstrapInfrastructureKey(deps: {
  secret: string | null;
  prisma: PrismaClient;
  hasher: KeyHasher;
  keys: ApiKeyService;
  log: FastifyBaseLogger;
  now?: () => Date;
}): Promise<BootstrapOutcome> {
  const { secret, prisma, hasher, keys, log } = deps;
  if (secret === null) return 'not-configured';
  if (!isWellFormedKey(secret)) {
    // As JIM: warn (never printing the value) and carry on without it.
    log.warn('JIM_INFRASTRUCTURE_API_KEY is set but malformed (it must start with jim_ak_ and be 32–256 visible ASCII characters); ignoring it');
    return 'malformed';
  }
  const prefix = keyPrefixOf(secret);
  // pg_advisory_xact_lock: held by this transaction's connection until it ends.
  const { outcome, keyId } = await prisma.$transaction(
    async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(${BOOTSTRAP_LOCK_KEY})`;
      const records = await tx.infrastructureBootstrap.findMany({ where: { keyPrefix: prefix } });
      for (const r of records) {
        if (await hasher.verify(r.hash, secret)) {
          const exists = await createKeyStore(prisma).exists(r.apiKeyId, tx);
          return { outcome: exists ? ('exists' as const) : ('previously-bootstrapped' as const), keyId: r.apiKeyId };
        }
      }
      const at = (deps.now ?? (() => new Date()))();
      const { key } = await keys.create(
        SYSTEM_ACTOR,
        {
          name: 'Infrastructure Key',
          description: 'Created from JIM_INFRASTRUCTURE_API_KEY at start-up; valid for 24 hours. Use it to create your own keys.',
          roleIds: [ADMINISTRATOR_ROLE_ID],
          expiresAt: new Date(at.getTime() + INFRASTRUCTURE_TTL_MS).toISOString(),
        },
        { secret, isInfrastructureKey: true, tx, at },
      );
      await tx.infrastructureBootstrap.create({
        data: { id: randomUUID(), keyPrefix: prefix, hash: await hasher.hash(secret), apiKeyId: key.id },
      });
      return { outcome: 'created' as const, keyId: key.id };
    },
    { timeout: 60_000, maxWait: 60_000 },
  );
  const messages = {
    created: 'infrastructure key created from JIM_INFRASTRUCTURE_API_KEY (Administrator, valid for 24 hours)',
    exists: 'infrastructure key already bootstrapped',
    'previously-bootstrapped': 'this infrastructure key was bootstrapped before and has since been deleted; not re-creating it',
  };
  log.info({ keyId, keyPrefix: prefix }, messages[outcome]);
  return outcome;
}

/** The one line a new operator needs when there is no key to start with. */
export const FIRST_KEY_HINT =
  'no enabled, unexpired key can create keys yet: run `npm run --silent keys:create -- --name admin --role-ids 1 --expires-in 30d` in the checkout ' +
  '(it prints the key), or restart with JIM_INFRASTRUCTURE_API_KEY=jim_ak_<at least 25 characters> (README: "Getting a first key")';

/**
 * Whether some enabled, unexpired key holds apikeys.write (so someone can create the others);
 * undefined when the database did not say within `timeoutMs`.
 */
export function hasUsableKey(keys: Pick<KeyStore, 'anyCanCreateKeys'>, timeoutMs: number): Promise<boolean | undefined> {
  return withinDeadline(keys.anyCanCreateKeys(), timeoutMs);
}
