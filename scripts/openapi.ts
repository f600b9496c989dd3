// npm run openapi: regenerate openapi/openapi.json from the route schemas.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateOpenApiDocument } from '../src/openapi-document.js';

const target = path.resolve(import.meta.dirname, '../openapi/openapi.json');
await writeFile(target, await generateOpenApiDocument());
process.stdout.write(`wrote ${path.relative(process.cwd(), target)}\n`);
