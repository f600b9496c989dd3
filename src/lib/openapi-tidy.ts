// The zod type provider registers an input and an output variant of every named schema
// ("X" and "XInput"); most are never referenced. Dropping the unreferenced ones, and giving a
// lone input variant its plain name, keeps the document (and clients generated from it) clean.
import { isErrorCode } from './errors.js';
import { exampleProblem, PROBLEM_CONTENT_TYPE } from './problem.js';

type Json = unknown;
type Doc = { paths?: Json; components?: { schemas?: Record<string, Json> } };

const PREFIX = '#/components/schemas/';

function refsIn(node: Json, out: Set<string>) {
  if (Array.isArray(node)) {
    for (const item of node) refsIn(item, out);
  } else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith(PREFIX)) out.add(v.slice(PREFIX.length));
      else refsIn(v, out);
    }
  }
}

function renameRefs(node: Json, renames: Map<string, string>): Json {
  if (Array.isArray(node)) return node.map((n) => renameRefs(n, renames));
  if (node && typeof node === 'object') {
    return Object.fromEntries(
      Object.entries(node).map(([k, v]) => {
        if (k === '$ref' && typeof v === 'string' && v.startsWith(PREFIX)) {
          const name = v.slice(PREFIX.length);
          return [k, `${PREFIX}${renames.get(name) ?? name}`];
        }
        return [k, renameRefs(v, renames)];
      }),
    );
  }
  return node;
}

export function tidyOpenApi<T extends Doc>(doc: T): T {
  const schemas = doc.components?.schemas;
  if (!schemas) return doc;
  // Everything reachable from the paths, following references between schemas.
  const used = new Set<string>();
  refsIn(doc.paths, used);
  for (let grew = true; grew; ) {
    grew = false;
    for (const name of [...used]) {
      const before = used.size;
      refsIn(schemas[name], used);
      if (used.size > before) grew = true;
    }
  }
  const renames = new Map<string, string>();
  for (const name of used) {
    const plain = name.replace(/Input$/, '');
    if (plain !== name && !used.has(plain)) renames.set(name, plain);
  }
  const kept: Record<string, Json> = {};
  for (const name of Object.keys(schemas).sort()) {
    if (used.has(name)) kept[renames.get(name) ?? name] = schemas[name];
  }
  return renameRefs({ ...doc, components: { ...doc.components, schemas: kept } }, renames) as T;
}

type Media = { schema?: Json; example?: Json };
type Response = { description?: string; content?: Record<string, Media> };
type Operation = { security?: unknown[]; responses?: Record<string, Response> };

const operations = (doc: Doc) => Object.values((doc.paths ?? {}) as Record<string, Record<string, Operation>>).flatMap((item) => Object.values(item));

const COMMON: Record<string, string> = {
  429: 'Rate limited: too many requests for this key, or too many failed ones from this address (RATE_LIMITED); see Retry-After',
  503: 'The database is unavailable (SERVICE_UNAVAILABLE), too many key verifications are in progress (OVERLOADED), or the server is shutting down (SHUTTING_DOWN); see Retry-After',
};

/**
 * Every authenticated route can be rate limited, and every route can meet an outage or a
 * shutdown: the error handler answers those for all of them, so they are declared on all.
 */
export function addCommonErrors<T extends Doc>(doc: T): T {
  for (const op of operations(doc)) {
    const authenticated = (op.security ?? []).length > 0;
    for (const status of authenticated ? ['429', '503'] : []) {
      op.responses ??= {};
      op.responses[status] ??= { description: COMMON[status], content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } } } };
    }
  }
  return doc;
}

/**
 * A body schema that also takes null (fastify's absent body) is an optional body: the document
 * says so, rather than inviting clients to send the JSON text `null`.
 */
export function optionalBodies<T extends Doc>(doc: T): T {
  type Body = { required?: boolean; content?: Record<string, Media> };
  for (const op of operations(doc) as Array<Operation & { requestBody?: Body }>) {
    const media = op.requestBody?.content?.['application/json'];
    const anyOf = (media?.schema as { anyOf?: Json[] } | undefined)?.anyOf;
    if (!media || !anyOf || anyOf.length !== 2) continue;
    const rest = anyOf.filter((s) => (s as { type?: string }).type !== 'null');
    if (rest.length !== 1) continue;
    media.schema = rest[0];
    op.requestBody!.required = false;
  }
  return doc;
}

/**
 * Every problem+json response gets an example of its own status (the shared Problem schema
 * can carry only one, which would show a 404 under "400 Invalid request").
 */
export function addProblemExamples<T extends Doc>(doc: T): T {
  for (const op of operations(doc)) {
    for (const [status, response] of Object.entries(op.responses ?? {})) {
      const media = response.content?.[PROBLEM_CONTENT_TYPE];
      if (!media || !/^\d{3}$/.test(status)) continue;
      // The first code the response's description names, e.g. "… (SHUTTING_DOWN)", else the status's usual one.
      const named = /\(([A-Z_]+)[,)]/.exec(response.description ?? '')?.[1];
      const example: Record<string, unknown> = exampleProblem(Number(status), named && isErrorCode(named) ? named : undefined);
      // The health check's problem also says what the database is doing.
      if ((media.schema as { $ref?: string } | undefined)?.$ref === '#/components/schemas/Unhealthy') example.database = 'unavailable';
      media.example = example;
    }
  }
  return doc;
}
