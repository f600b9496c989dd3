// A client nobody here wrote: types generated from openapi/openapi.json by openapi-typescript,
// calls made by openapi-fetch, type-checked with tsc and run against the real server; and the
// document linted by Redocly's CLI.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { KEY_EVENT_TYPES } from '../src/webhooks/events.js';
import { buildTestApp, testDatabase } from './helpers/app.js';
import { ADMIN, seedKey, sql, type SeededKey } from './helpers/keys.js';
import { ROOT } from './helpers/server-process.js';

const OUT = path.join(ROOT, 'test-results', 'generated-client');

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });
}

const bin = (pkg: string, file: string) => path.join(ROOT, 'node_modules', pkg, file);

/** The generated client in use: every call typed by the generated `paths`. */
const DRIVER = `import createClient from 'openapi-fetch';
import type { components, paths } from './keyward-api.js';

type Problem = components['schemas']['Problem'];

export async function lifecycle(baseUrl: string, apiKey: string) {
  const client = createClient<paths>({ baseUrl, headers: { 'X-API-Key': apiKey } });
  const created = await client.POST('/api/v1/apikeys', {
    body: { name: 'generated-client', roleIds: [3], description: 'made by openapi-fetch', changeReason: 'client test' },
  });
  if (!created.data) throw new Error('create failed: ' + JSON.stringify(created.error));
  const secret: string = created.data.key;
  const id: string = created.data.id;
  const listed = await client.GET('/api/v1/apikeys', { params: { query: { name: 'generated-*' } } });
  const patched = await client.PATCH('/api/v1/apikeys/{id}', { params: { path: { id } }, body: { isEnabled: false, expiresAt: null } });
  const enabled: boolean | undefined = patched.data?.isEnabled;
  const deleted = await client.DELETE('/api/v1/apikeys/{id}', { params: { path: { id }, query: { changeReason: 'client test done' } } });
  const gone = await client.GET('/api/v1/apikeys/{id}', { params: { path: { id } } });
  const problem: Problem | undefined = gone.error;
  return {
    id,
    secretPrefix: secret.slice(0, 7),
    createdStatus: created.response.status,
    listedNames: (listed.data ?? []).map((k) => k.name),
    patchedStatus: patched.response.status,
    enabled,
    deletedStatus: deleted.response.status,
    goneStatus: gone.response.status,
    goneCode: problem?.code,
  };
}

// The types are real, not \`any\`: these must not compile (tsc fails on an unused expectation).
export function misuse(client: ReturnType<typeof createClient<paths>>) {
  // @ts-expect-error isEnabled is a boolean
  void client.PATCH('/api/v1/apikeys/{id}', { params: { path: { id: 'x' } }, body: { isEnabled: 'no' } });
  // @ts-expect-error no such route
  void client.GET('/api/v1/apikey');
  // @ts-expect-error a created key has no "hash"
  void client.POST('/api/v1/apikeys', { body: { name: 'x' } }).then((r) => r.data?.hash);
}
`;

describe('a client generated from openapi/openapi.json', () => {
  let app: App;
  let admin: SeededKey;
  let base: string;
  beforeAll(async () => {
    app = await buildTestApp();
    admin = await seedKey(app, { roleIds: [ADMIN] });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    await mkdir(OUT, { recursive: true });
  });

  it('openapi-typescript generates types; tsc accepts the calls and rejects misuse; the calls work', async () => {
    const gen = await run(process.execPath, [bin('openapi-typescript', 'bin/cli.js'), 'openapi/openapi.json', '-o', path.join(OUT, 'keyward-api.d.ts')]);
    expect(gen.code, gen.out).toBe(0);
    const types = await readFile(path.join(OUT, 'keyward-api.d.ts'), 'utf8');
    expect(types).toContain('"/api/v1/apikeys/{id}"');
    expect(types).not.toMatch(/\bhash\??:/); // no property of that name anywhere
    await writeFile(path.join(OUT, 'driver.ts'), DRIVER);

    const tsc = await run(process.execPath, [
      bin('typescript', 'bin/tsc'),
      '--noEmit',
      '--strict',
      '--skipLibCheck',
      '--target', 'es2023',
      '--module', 'nodenext',
      '--moduleResolution', 'nodenext',
      '--types', 'node',
      path.join(OUT, 'driver.ts'),
    ]);
    expect(tsc.code, tsc.out).toBe(0);

    const { lifecycle } = (await import(path.join(OUT, 'driver.ts'))) as {
      lifecycle: (b: string, k: string) => Promise<Record<string, unknown> & { id: string }>;
    };
    const result = await lifecycle(base, admin.secret);
    expect(result).toMatchObject({
      secretPrefix: 'jim_ak_',
      createdStatus: 201,
      listedNames: ['generated-client'],
      patchedStatus: 200,
      enabled: false,
      deletedStatus: 204,
      goneStatus: 404,
      goneCode: 'API_KEY_NOT_FOUND',
    });
    const history = await sql<{ operation: string; change_reason: string }>(
      (await testDatabase()).url,
      'SELECT operation, change_reason FROM api_key_changes WHERE api_key_id = $1 ORDER BY version',
      [result.id],
    );
    expect(history.map((h) => h.change_reason)).toEqual(['client test', null, 'client test done']);
  }, 120_000);
});

type Operation = { operationId?: string; summary?: string; responses: Record<string, { content?: Record<string, { example?: unknown }> }> };

describe('openapi/openapi.json', () => {
  it('passes Redocly lint (redocly.yaml) with no errors', async () => {
    const r = await run(process.execPath, [bin('@redocly/cli', 'bin/cli.js'), 'lint', 'openapi/openapi.json', '--format=json']);
    const start = r.out.indexOf('{');
    const report = JSON.parse(r.out.slice(start, r.out.lastIndexOf('}') + 1)) as { totals: { errors: number; warnings: number } };
    expect(report.totals.errors, r.out).toBe(0);
    expect(r.code).toBe(0);
  }, 60_000);

  it('every operation has an operationId, a summary and problem+json errors with examples; bodies have examples; no example holds a real-looking secret', async () => {
    const doc = JSON.parse(await readFile(path.join(ROOT, 'openapi/openapi.json'), 'utf8')) as { paths: Record<string, Record<string, Operation>> };
    const ops = Object.entries(doc.paths).flatMap(([p, item]) => Object.entries(item).map(([m, op]) => ({ at: `${m.toUpperCase()} ${p}`, op })));
    expect(ops.length).toBeGreaterThan(10);
    for (const { at, op } of ops) {
      expect(op.operationId, at).toMatch(/^[a-z][A-Za-z]+$/);
      expect(op.summary, at).toBeTruthy();
      const errors = Object.entries(op.responses).filter(([s]) => Number(s) >= 400);
      expect(errors.length, at).toBeGreaterThan(0);
      for (const [status, res] of errors) {
        expect(Object.keys(res.content ?? {}), `${at} ${status}`).toEqual(['application/problem+json']);
      }
      // The leaked-key report needs no key: nothing to refuse with 401 or 403.
      if (at.includes('/apikeys') && !at.endsWith('/apikeys/revoke')) expect(errors.map(([s]) => s), at).toEqual(expect.arrayContaining(['401', '403']));
    }
    // Examples: every problem response and every request body has one.
    for (const { at, op } of ops) {
      for (const [status, res] of Object.entries(op.responses)) {
        const problem = res.content?.['application/problem+json'];
        if (problem) expect(problem.example, `${at} ${status}`).toMatchObject({ status: Number(status), code: expect.any(String) });
      }
      const body = (op as { requestBody?: { content: Record<string, { schema: { $ref: string } }> } }).requestBody;
      if (body) {
        const name = body.content['application/json'].schema.$ref.split('/').pop()!;
        const schema = (doc as unknown as { components: { schemas: Record<string, { examples?: unknown[] }> } }).components.schemas[name];
        expect(schema.examples?.length, `${at} request body ${name}`).toBeGreaterThan(0);
      }
    }
    // The documented codes are the ones the server sends (database-outage.test and health.test
    // assert these on real replies).
    const example = (p: string, status: string) =>
      (doc.paths[p].get.responses[status].content!['application/problem+json'].example as { code: string }).code;
    expect(example('/api/v1/apikeys', '503')).toBe('SERVICE_UNAVAILABLE');
    expect(example('/api/v1/health', '503')).toBe('DATABASE_UNAVAILABLE');
    expect(example('/api/v1/apikeys', '429')).toBe('RATE_LIMITED');
    // Every string in the document (examples included): a key-shaped one must say it is an example.
    const strings: string[] = [];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') strings.push(v);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') Object.values(v).forEach(walk);
    };
    walk(doc);
    const keyLike = strings.flatMap((t) => t.match(/jim_ak_[A-Za-z0-9_-]{8,}/g) ?? []);
    expect(keyLike.length).toBeGreaterThan(0);
    for (const k of keyLike) expect(k).toMatch(/^jim_ak_EXAMPLE/);
    expect(strings.filter((t) => /^jim_ak_[0-9a-f]{64}$/.test(t))).toEqual([]);
    // Webhook signing secrets likewise.
    const signingLike = strings.flatMap((t) => t.match(/whsec_[A-Za-z0-9+/=]{8,}/g) ?? []);
    expect(signingLike.length).toBeGreaterThan(0);
    for (const s of signingLike) expect(s).toMatch(/^whsec_EXAMPLE/);
  });

  it('documents every webhook event in the webhooks section: signature headers, payload schema and example', async () => {
    const doc = JSON.parse(await readFile(path.join(ROOT, 'openapi/openapi.json'), 'utf8'));
    expect(Object.keys(doc.webhooks).sort()).toEqual([...KEY_EVENT_TYPES, 'ping'].sort());
    for (const [type, item] of Object.entries<any>(doc.webhooks)) {
      const op = item.post;
      expect(op.parameters.map((p: { name: string }) => p.name), type).toEqual(['webhook-id', 'webhook-timestamp', 'webhook-signature']);
      const media = op.requestBody.content['application/json'];
      expect(media.schema.properties.type.const).toBe(type);
      const example = Object.values<any>(media.examples)[0].value;
      expect(example.type).toBe(type);
      for (const field of media.schema.properties.data.required) expect(example.data, `${type} ${field}`).toHaveProperty(field);
      if (type !== 'ping') expect(media.schema.properties.data.properties.key.$ref).toBe('#/components/schemas/ApiKey');
    }
  });
});
