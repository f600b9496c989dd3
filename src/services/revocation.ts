// Leaked-key reports (POST /apikeys/revoke): each reported secret is identified — under the
// authentication's cache, budgets and argon2 lanes — and, when it verifies, its key is disabled
// (or a rotation's grace period ended). A secret that could not be verified right now (argon2
// lanes full, the database away) is not dropped: it is kept in memory and tried again every few
// seconds for a while, so a flood cannot stop a leaked key from being revoked, only delay it.
import type { FastifyBaseLogger } from 'fastify';
import type { Identified } from '../auth/authenticator.js';

export interface RevocationDeps {
  identify(secret: string, ip: string): Promise<Identified>;
  /** Disables the key (or ends its grace period) if `secret`, which verified as `hashTag`, is still its; whether it changed anything. */
  revoke(keyId: string, secret: string, hashTag: string, source: string | undefined): Promise<boolean>;
  /** A wrong secret for a real prefix: a security event, as for authentication. */
  recordWrong(prefix: string, ip: string): void;
  log: FastifyBaseLogger;
  retryEveryMs?: number;
  retryForMs?: number;
}

interface Pending {
  ip: string;
  source: string | undefined;
  until: number;
}

/** Secrets held for a retry at most (a flood of reports cannot grow the heap without bound). */
const MAX_PENDING = 10_000;

export function createRevocationService(deps: RevocationDeps) {
  const retryEveryMs = deps.retryEveryMs ?? 5_000;
  const retryForMs = deps.retryForMs ?? 10 * 60_000;
  /** Secret → its report; in memory only, never logged. */
  const pending = new Map<string, Pending>();
  let timer: NodeJS.Timeout | undefined;
  let retrying = false;

  /** One secret: 'done' (whatever it was), or 'retry'. */
  async function handle(secret: string, ip: string, source: string | undefined): Promise<'revoked' | 'done' | 'retry'> {
    try {
      const found = await deps.identify(secret, ip);
      if (found.kind === 'busy') return 'retry';
      if (found.kind === 'wrong') deps.recordWrong(found.prefix, ip);
      if (found.kind !== 'found') return 'done';
      return (await deps.revoke(found.keyId, secret, found.hashTag, source)) ? 'revoked' : 'done';
    } catch (err) {
      // The error's name only: a driver's message could quote a query's parameters.
      deps.log.warn({ errName: (err as Error)?.name, code: (err as { code?: unknown })?.code }, 'a leaked-key report could not be processed now; it is retried');
      return 'retry';
    }
  }

  function later(secret: string, ip: string, source: string | undefined) {
    if (pending.has(secret) || pending.size >= MAX_PENDING) return;
    pending.set(secret, { ip, source, until: Date.now() + retryForMs });
    if (!timer) {
      timer = setInterval(() => void retry(), retryEveryMs);
      timer.unref();
    }
  }

  async function retry() {
    if (retrying) return;
    retrying = true;
    try {
      for (const [secret, p] of [...pending]) {
        const outcome = await handle(secret, p.ip, p.source);
        if (outcome === 'revoked') deps.log.warn({ revoked: 1 }, 'leaked-key report revoked keys (on a retry)');
        if (outcome !== 'retry' || Date.now() > p.until) pending.delete(secret);
        if (outcome === 'retry' && Date.now() <= p.until) break; // still busy: the rest waits for the next round
      }
    } finally {
      retrying = false;
      if (!pending.size && timer) {
        clearInterval(timer);
        timer = undefined;
      }
    }
  }

  return {
    /** Processes a report's secrets one by one; those that could not be verified now are retried later. */
    async report(secrets: Iterable<string>, ip: string, source: string | undefined): Promise<{ revoked: number; deferred: number }> {
      let revoked = 0;
      let deferred = 0;
      for (const secret of secrets) {
        const outcome = await handle(secret, ip, source);
        if (outcome === 'revoked') revoked++;
        else if (outcome === 'retry') {
          deferred++;
          later(secret, ip, source);
        }
      }
      return { revoked, deferred };
    },
    get pending() {
      return pending.size;
    },
    /** For tests and shutdown: one retry round now. */
    retryNow: retry,
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      pending.clear();
    },
  };
}

export type RevocationService = ReturnType<typeof createRevocationService>;
