import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { generateOpenApiDocument } from '../src/openapi-document.js';
import { buildTestApp } from './helpers/app.js';

const COMMITTED = path.resolve(import.meta.dirname, '../openapi/openapi.json');

let app: App;
beforeAll(async () => {
  app = await buildTestApp();
});

describe('OpenAPI', () => {
  it('the committed openapi/openapi.json matches the code (run `npm run openapi` after changing a route)', async () => {
    const committed = await readFile(COMMITTED, 'utf8');
    expect(await generateOpenApiDocument()).toBe(committed);
  });

  it('is served at /openapi.json without a key, as OpenAPI 3.1, identical to the committed file', async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const doc = res.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(doc).toEqual(JSON.parse(await readFile(COMMITTED, 'utf8')));
  });

  it('declares the X-API-Key and bearer security schemes', () => {
    const doc = app.swagger() as any;
    expect(doc.components.securitySchemes.ApiKeyHeader).toEqual(
      expect.objectContaining({ type: 'apiKey', in: 'header', name: 'X-API-Key' }),
    );
    expect(doc.components.securitySchemes.BearerAuth).toEqual(expect.objectContaining({ type: 'http', scheme: 'bearer' }));
  });

  it('documents /api/v1 routes only: the /api/ aliases are hidden and operation ids are unique', () => {
    const doc = app.swagger() as any;
    const paths = Object.keys(doc.paths);
    expect(paths).toContain('/api/v1/health');
    expect(paths.filter((p) => !p.startsWith('/api/v1/'))).toEqual([]);
    const ids = paths.flatMap((p) => Object.values(doc.paths[p]).map((op: any) => op.operationId));
    expect(ids.every(Boolean)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('every operation has tags, a description and documented responses', () => {
    const doc = app.swagger() as any;
    for (const [p, item] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(item)) {
        expect(op.tags?.length, `${method} ${p} tags`).toBeGreaterThan(0);
        expect(op.description, `${method} ${p} description`).toBeTruthy();
        expect(Object.keys(op.responses ?? {}).length, `${method} ${p} responses`).toBeGreaterThan(0);
      }
    }
  });

  it('serves the explorer at /docs from the package, with no CDN', async () => {
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    const html = page.body;
    expect(html).toMatch(/swagger-ui/i);
    const external = [...html.matchAll(/(?:src|href)="(https?:)?\/\/[^"]+"/g)].map((m) => m[0]);
    expect(external).toEqual([]);
    const bundle = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    expect(bundle.statusCode).toBe(200);
    expect(bundle.body.length).toBeGreaterThan(100_000);
    const spec = await app.inject({ method: 'GET', url: '/docs/json' });
    expect(spec.json().paths['/api/v1/health']).toBeDefined();
  });
});
