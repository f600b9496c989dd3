// The lint rules can fail: an import cycle (type-only imports included) and an import against
// the layers are both reported. `npm run lint` runs them over the whole project (and CI runs it).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { afterAll, describe, expect, it } from 'vitest';
import noImportCycle from '../eslint/no-import-cycle.js';
import { ROOT } from './helpers/server-process.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('lint rules', () => {
  it('reports a cycle made of type-only imports, naming it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'keyward-lint-'));
    dirs.push(dir);
    await writeFile(path.join(dir, 'a.ts'), "import type { B } from './b.js';\nexport interface A { b: B }\n");
    await writeFile(path.join(dir, 'b.ts'), "import type { A } from './a.js';\nexport interface B { a: A }\n");
    await writeFile(path.join(dir, 'c.ts'), "import type { A } from './a.js';\nexport type C = A;\n");
    const eslint = new ESLint({
      cwd: dir,
      overrideConfigFile: true,
      overrideConfig: [
        {
          files: ['**/*.ts'],
          languageOptions: { parser: tseslint.parser },
          plugins: { keyward: { rules: { 'no-import-cycle': noImportCycle } } },
          rules: { 'keyward/no-import-cycle': 'error' },
        },
      ],
    });
    const results = await eslint.lintFiles(['a.ts', 'b.ts', 'c.ts']);
    const messages = Object.fromEntries(results.map((r) => [path.basename(r.filePath), r.messages.map((m) => m.message)]));
    expect(messages['a.ts']).toEqual(['import cycle: a.ts → b.ts → a.ts']);
    expect(messages['b.ts']).toEqual(['import cycle: b.ts → a.ts → b.ts']);
    expect(messages['c.ts']).toEqual([]); // imports into a cycle, but is not part of it
  });

  it('reports an import against the layers (lib importing a service)', async () => {
    const eslint = new ESLint({ cwd: ROOT });
    const [result] = await eslint.lintText("import { createApiKeyService } from '../services/api-keys.js';\nexport const x = createApiKeyService;\n", {
      filePath: path.join(ROOT, 'src/lib/example.ts'),
    });
    expect(result.messages.map((m) => m.ruleId)).toContain('no-restricted-imports');
    expect(result.messages.find((m) => m.ruleId === 'no-restricted-imports')?.message).toMatch(/lib\/ is the bottom layer/);
  });
});
