// Responses are serialised by fast-json-stringify from the JSON Schema of each route's zod
// response schema: the schema is still the only path out (undeclared properties such as `hash`
// are never written), without running a zod parse per response on the hot path.
import fastJson from 'fast-json-stringify';
import { z } from 'zod';

export function serializerCompiler({ schema }: { schema: unknown }) {
  const json = z.toJSONSchema(schema as z.ZodType, {
    target: 'draft-7',
    io: 'output',
    unrepresentable: 'any',
    reused: 'inline',
    metadata: z.registry(), // no ids: one self-contained schema per response
  });
  const stringify = fastJson(json as Parameters<typeof fastJson>[0]);
  return (data: unknown) => stringify(data);
}
