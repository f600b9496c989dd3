// The cache's own rules, without a server: bounds, staleness, and the race guard.
import { describe, expect, it } from 'vitest';
import { createKeyCache, digestKey, type CachedKey } from '../src/auth/key-cache.js';

const entry = (id: string): CachedKey => ({
  principal: { id, name: id, keyPrefix: 'jim_ak_00000000', roles: [], permissions: new Set(), permissionList: [], isInfrastructureKey: false, expiresAt: null, metadata: {}, allowedCidrs: null, allowsAddress: null, rateLimit: null, secretExpiresAt: null },
  hashTag: 'tag',
  version: 1,
  isEnabled: true,
  expiresAt: null,
  checkedAt: 0,
  stale: false,
});

function cache(max = 3) {
  const c = createKeyCache({ maxEntries: max, maxAgeMs: 60_000, negativeMaxEntries: 2, negativeTtlMs: 5_000 });
  c.setFillable(true);
  return c;
}

describe('key cache', () => {
  it('is bounded, evicting the least recently used', () => {
    const c = cache(2);
    c.set('a', entry('A'), c.epoch);
    c.set('b', entry('B'), c.epoch);
    c.get('a'); // a is now the most recent
    c.set('c', entry('C'), c.epoch);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBeDefined();
    expect(c.stats().entries).toBe(2);
    expect(c.stats().indexed).toBe(2); // B's index entry went with its eviction
    for (let i = 0; i < 1000; i++) c.set(`k${i}`, entry(`K${i}`), c.epoch);
    expect(c.stats()).toMatchObject({ entries: 2, indexed: 2 });
  });

  it('does not cache a read that an invalidation of the same key overtook; other keys do not matter', () => {
    const c = cache();
    const readAt = c.epoch;
    c.invalidateKey('OTHER');
    c.set('a', entry('A'), readAt);
    expect(c.get('a')).toBeDefined();
    const readAt2 = c.epoch;
    c.invalidateKey('B');
    c.set('b', entry('B'), readAt2);
    expect(c.get('b')).toBeUndefined();
  });

  it('marks a changed key stale and drops a deleted one', () => {
    const c = cache();
    c.set('a', entry('A'), c.epoch);
    c.invalidateKey('A');
    expect(c.get('a')?.stale).toBe(true);
    c.invalidateKey('A', true);
    expect(c.get('a')).toBeUndefined();
  });

  it('fills only while listening, and not with reads made before listening resumed', () => {
    const c = cache();
    c.setFillable(false);
    const readWhileDeaf = c.epoch;
    c.set('a', entry('A'), readWhileDeaf);
    expect(c.get('a')).toBeUndefined();
    c.setFillable(true);
    c.set('a', entry('A'), readWhileDeaf);
    expect(c.get('a')).toBeUndefined();
    c.set('a', entry('A'), c.epoch);
    expect(c.get('a')).toBeDefined();
    c.setFillable(false);
    expect(c.stats().entries).toBe(0);
  });

  it('remembers wrong secrets for the TTL only, bounded, and forgets them when a key is created', () => {
    const c = cache();
    c.rememberInvalid('x', 1_000);
    expect(c.isKnownInvalid('x', 5_999)).toBe(true);
    expect(c.isKnownInvalid('x', 6_000)).toBe(false);
    c.rememberInvalid('x', 0);
    c.rememberInvalid('y', 0);
    c.rememberInvalid('z', 0);
    expect(c.stats().negative).toBe(2);
    c.keyCreated();
    expect(c.stats().negative).toBe(0);
  });

  it('keys entries by a digest, not the key', () => {
    const key = `jim_ak_${'ab'.repeat(32)}`;
    const d = digestKey(key);
    expect(d).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(d).not.toContain(key.slice(7, 20));
    expect(digestKey(key)).toBe(d);
  });
});
