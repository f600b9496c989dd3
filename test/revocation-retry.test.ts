// The leaked-key report's retries, without a server: a secret that could not be verified now
// (lanes full, database away) is kept and tried again until it is, or until its time is up;
// everything else is settled at once. The route and the database are in test/revoke.test.ts.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Identified } from '../src/auth/authenticator.js';
import { createRevocationService } from '../src/services/revocation.js';

function harness(answers: Array<Identified | Error>) {
  const calls: string[] = [];
  const revoked: string[] = [];
  const wrong: string[] = [];
  const service = createRevocationService({
    identify: async (secret) => {
      calls.push(secret);
      const next = answers.shift() ?? { kind: 'busy' };
      if (next instanceof Error) throw next;
      return next;
    },
    revoke: async (keyId) => {
      revoked.push(keyId);
      return true;
    },
    recordWrong: (prefix) => wrong.push(prefix),
    log: pino({ level: 'silent' }),
    retryEveryMs: 60_000,
    retryForMs: 60_000,
  });
  return { service, calls, revoked, wrong };
}

describe('leaked-key report retries', () => {
  it('settles found, unknown and wrong secrets at once; keeps a busy one and revokes it on a retry', async () => {
    const h = harness([
      { kind: 'found', keyId: 'k1', hashTag: 't1' },
      { kind: 'unknown' },
      { kind: 'wrong', prefix: 'jim_ak_abcdefghi' },
      { kind: 'busy' },
      { kind: 'found', keyId: 'k4', hashTag: 't4' },
    ]);
    expect(await h.service.report(['s1', 's2', 's3', 's4'], '203.0.113.1', undefined)).toEqual({ revoked: 1, deferred: 1 });
    expect(h.revoked).toEqual(['k1']);
    expect(h.wrong).toEqual(['jim_ak_abcdefghi']);
    expect(h.service.pending).toBe(1);
    await h.service.retryNow();
    expect(h.revoked).toEqual(['k1', 'k4']);
    expect(h.calls).toEqual(['s1', 's2', 's3', 's4', 's4']);
    expect(h.service.pending).toBe(0);
    h.service.close();
  });

  it('retries after an error (the database away) and gives up when its time is up', async () => {
    const h = harness([new Error('connection refused'), { kind: 'busy' }]);
    expect(await h.service.report(['s1'], '203.0.113.1', 'https://example.com')).toEqual({ revoked: 0, deferred: 1 });
    await h.service.retryNow(); // busy again: still held
    expect(h.service.pending).toBe(1);
    h.service.close();
    expect(h.service.pending).toBe(0);
    const quick = createRevocationService({
      identify: async () => ({ kind: 'busy' }),
      revoke: async () => true,
      recordWrong: () => {},
      log: pino({ level: 'silent' }),
      retryEveryMs: 60_000,
      retryForMs: 0,
    });
    await quick.report(['s1'], '203.0.113.1', undefined);
    expect(quick.pending).toBe(1);
    await new Promise((r) => setTimeout(r, 5));
    await quick.retryNow();
    expect(quick.pending).toBe(0);
    quick.close();
  });
});
