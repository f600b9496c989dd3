import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, seedKey, sql, type SeededKey } from './helpers/keys.js';

let app: App;
let admin: SeededKey;

// Names chosen to trip locale-dependent sorting and LIKE metacharacters.
const NAMES = ['beta', 'Alpha', 'alpha', '_under', '100%', 'a_c', 'abc', 'Zeta', 'émile', 'a%c', 'a\\c', 'gamma-1', 'gamma-2'];

beforeAll(async () => {
  app = await buildTestApp();
  admin = await seedKey(app, { name: 'zz-list-admin', roleIds: [ADMIN] });
  for (const name of NAMES) await seedKey(app, { name, isEnabled: name !== 'beta' });
});

async function list(query: string) {
  const res = await app.inject({ method: 'GET', url: `/api/v1/apikeys${query}`, headers: admin.headers });
  return { res, names: res.statusCode === 200 ? (res.json() as Array<{ name: string; id: string }>).map((k) => k.name) : [] };
}

function expectedOrder(names: string[], ids: Map<string, string>) {
  // lower(name) by code point, then id: what the contract promises.
  return [...names].sort((a, b) => {
    const la = a.toLowerCase();
    const lb = b.toLowerCase();
    if (la !== lb) return la < lb ? -1 : 1;
    return ids.get(a)! < ids.get(b)! ? -1 : 1;
  });
}

describe('GET /api/v1/apikeys', () => {
  it('is a bare JSON array of every key, ordered by lower(name) in code-point order, then id', async () => {
    const { res, names } = await list('');
    expect(res.statusCode).toBe(200);
    expect(res.headers.link).toBeUndefined();
    const all = res.json() as Array<{ name: string; id: string }>;
    const ids = new Map(all.map((k) => [k.name, k.id]));
    expect(names).toEqual(expectedOrder([...NAMES, 'zz-list-admin'], ids));
    // Code-point order puts '%' and '_' and '\' where a locale would not.
    expect(names.indexOf('100%')).toBeLessThan(names.indexOf('_under'));
    expect(names.indexOf('zz-list-admin')).toBeLessThan(names.indexOf('émile'));
  });

  it.each([
    ['alpha', ['Alpha', 'alpha']],
    ['ALPHA', ['Alpha', 'alpha']],
    ['gamma-*', ['gamma-1', 'gamma-2']],
    ['gamma-?', ['gamma-1', 'gamma-2']],
    ['a?c', ['a%c', 'a\\c', 'a_c', 'abc']],
    ['a_c', ['a_c']],
    ['a%c', ['a%c']],
    ['a\\c', ['a\\c']],
    ['_*', ['_under']],
    ['*%', ['100%']],
    ['É*', ['émile']],
    ['nomatch*', []],
  ])('filters ?name=%s with wildcards, case-insensitively, literal otherwise', async (pattern, expected) => {
    const { res, names } = await list(`?name=${encodeURIComponent(pattern)}`);
    expect(res.statusCode).toBe(200);
    expect([...names].sort()).toEqual([...expected].sort());
  });

  it('filters by isEnabled', async () => {
    expect((await list('?isEnabled=false')).names).toEqual(['beta']);
    const enabled = (await list('?isEnabled=true')).names;
    expect(enabled).not.toContain('beta');
    expect(enabled).toHaveLength(NAMES.length);
  });

  it('pages with limit and an opaque cursor, linking the next page with RFC 8288 Link', async () => {
    const everything = (await list('')).names;
    const seen: string[] = [];
    let url: string | null = '/api/v1/apikeys?limit=4&name=*';
    let pages = 0;
    while (url) {
      const res = await app.inject({ method: 'GET', url, headers: admin.headers });
      expect(res.statusCode).toBe(200);
      const page = res.json() as Array<{ name: string }>;
      expect(page.length).toBeLessThanOrEqual(4);
      seen.push(...page.map((k) => k.name));
      pages++;
      const link = res.headers.link as string | undefined;
      if (link) {
        const m = /^<([^>]+)>; rel="next"$/.exec(link);
        expect(m, link).not.toBeNull();
        expect(m![1]).toMatch(/^\/api\/v1\/apikeys\?/);
        expect(new URL(m![1], 'http://x').searchParams.get('name')).toBe('*');
        url = m![1];
      } else {
        url = null;
      }
    }
    expect(seen).toEqual(everything);
    expect(pages).toBe(Math.ceil(everything.length / 4));
  });

  it('the last full page has no Link', async () => {
    const total = (await list('')).names.length;
    const { res } = await list(`?limit=${total}`);
    expect(res.headers.link).toBeUndefined();
    expect(res.json()).toHaveLength(total);
  });

  it('a cursor the server did not issue is a 400, even when well formed', async () => {
    const first = await list('?limit=2');
    const next = new URL(/^<([^>]+)>/.exec(first.res.headers.link as string)![1], 'http://x').searchParams.get('cursor')!;
    const raw = Buffer.from(next, 'base64url');
    // Same shape, other position: the signature no longer matches.
    const payload = Buffer.from(JSON.stringify([1, 'zzz', '11111111-1111-4111-8111-111111111111']));
    const forged = Buffer.concat([raw.subarray(0, 16), payload]).toString('base64url');
    const unsigned = payload.toString('base64url');
    const nul = Buffer.concat([raw.subarray(0, 16), Buffer.from('[1,"\\u0000","11111111-1111-4111-8111-111111111111"]')]).toString('base64url');
    for (const cursor of [forged, unsigned, nul, next.slice(0, -2)]) {
      const { res } = await list(`?limit=2&cursor=${cursor}`);
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].field).toBe('cursor');
    }
    expect((await list(`?limit=2&cursor=${next}`)).res.statusCode).toBe(200);
  });

  it('pages through keys whose names are 200 emoji (long cursors round-trip)', async () => {
    for (const c of ['😀', '😁', '😂']) await seedKey(app, { name: c.repeat(200) });
    const all = (await list('')).names;
    const seen: string[] = [];
    let next: string | null = '/api/v1/apikeys?limit=1';
    while (next && seen.length <= all.length) {
      const res = await app.inject({ method: 'GET', url: next, headers: admin.headers });
      expect(res.statusCode, res.body).toBe(200);
      seen.push(...res.json().map((k: { name: string }) => k.name));
      const link = res.headers.link as string | undefined;
      next = link ? /^<([^>]+)>/.exec(link)![1] : null;
    }
    expect(seen).toEqual(all);
    expect(seen.filter((n) => n.startsWith('😀'))).toHaveLength(1);
  });

  it.each(['?name=%00', '?name=a%07b', '?name=tab%09'])('rejects a control character or invalid text in ?name (%s) with 400', async (query) => {
    const { res } = await list(query);
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].field).toBe('name');
  });

  it.each(['?limit=0', '?limit=1001', '?limit=abc', '?limit=1.5', '?cursor=not-a-cursor', `?cursor=${Buffer.from('[1,"x","nope"]').toString('base64url')}`, '?isEnabled=yes', '?name=a&name=b', '?bogus=1'])(
    'rejects %s with 400',
    async (query) => {
      const { res } = await list(query);
      expect(res.statusCode).toBe(400);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.json().code).toBe('VALIDATION_FAILED');
    },
  );

  it('caps an unpaged list at 10,000 keys', async () => {
    const { url } = await testDatabase();
    await sql(
      url,
      `INSERT INTO api_keys (id, name, key_prefix, hash, updated_at)
       SELECT gen_random_uuid(), 'bulk-' || lpad(g::text, 5, '0'), 'jim_ak_bulkbulk', 'x', now()
       FROM generate_series(1, 10005) g`,
    );
    const { res, names } = await list('');
    expect(res.statusCode).toBe(200);
    expect(names).toHaveLength(10_000);
    await sql(url, "DELETE FROM api_keys WHERE name LIKE 'bulk-%'");
  });
});

describe('on a database whose collation is language-aware (ICU en-US)', () => {
  it('still orders by lower(name) in code-point order, and still uses wildcards literally', async () => {
    const { inject } = await import('vitest');
    const { applyMigrations } = await import('../src/db/migrate.js');
    const { databaseUrl, dropDatabase } = await import('./helpers/databases.js');
    const adminUrl = inject('pgAdminUrl');
    const name = `${inject('pgTemplate')}_icu`;
    await sql(adminUrl, `CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`);
    try {
      const url = databaseUrl(adminUrl, name);
      await applyMigrations(url, { info() {}, debug() {} });
      const icuApp = await buildTestApp({ databaseUrl: url });
      const admin2 = await seedKey(icuApp, { name: 'icu-admin', roleIds: [ADMIN] });
      const names = ['a_c', 'abc', 'B', 'a%c', 'émile', 'Zeta', 'a-b', 'A b'];
      for (const n of names) await seedKey(icuApp, { name: n });
      const res = await icuApp.inject({ method: 'GET', url: '/api/v1/apikeys', headers: admin2.headers });
      const got = (res.json() as Array<{ name: string }>).map((k) => k.name);
      const expected = [...names, 'icu-admin'].sort((x, y) => (x.toLowerCase() < y.toLowerCase() ? -1 : x.toLowerCase() > y.toLowerCase() ? 1 : 0));
      expect(got).toEqual(expected);
      // en-US would put 'a_c' before 'a%c' and 'émile' before 'icu-admin'; code points do not.
      expect(got.indexOf('a%c')).toBeLessThan(got.indexOf('a_c'));
      expect(got.indexOf('icu-admin')).toBeLessThan(got.indexOf('émile'));
      const filtered = await icuApp.inject({ method: 'GET', url: `/api/v1/apikeys?name=${encodeURIComponent('a_c')}`, headers: admin2.headers });
      expect(filtered.json().map((k: { name: string }) => k.name)).toEqual(['a_c']);
      await icuApp.close();
    } finally {
      await dropDatabase(adminUrl, name);
    }
  });
});
