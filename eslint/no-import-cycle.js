// A local ESLint rule: no import cycles between the project's modules, type-only imports
// included. (eslint-plugin-import's no-cycle skips `import type`; a cycle of types is still two
// modules that cannot be understood, or moved, one without the other.) The graph is read from
// the files themselves: relative specifiers in import/export declarations and import().
import fs from 'node:fs';
import path from 'node:path';

const SPECIFIER = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|[\s;])import\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;
const deps = new Map();

function resolve(from, spec) {
  const target = path.resolve(path.dirname(from), spec);
  for (const candidate of [target.replace(/\.js$/, '.ts'), target, `${target}.ts`, path.join(target, 'index.ts')]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return null;
}

function depsOf(file) {
  if (!deps.has(file)) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      // unreadable: no edges
    }
    const out = new Set();
    for (const m of text.matchAll(SPECIFIER)) {
      const target = resolve(file, m[1] ?? m[2] ?? m[3]);
      // Generated code and dependencies never import ours: nothing to follow there.
      if (target && !target.includes(`${path.sep}generated${path.sep}`) && !target.includes(`${path.sep}node_modules${path.sep}`)) out.add(target);
    }
    deps.set(file, [...out]);
  }
  return deps.get(file);
}

/** A path from `start` back to `goal`, if there is one. */
function pathBack(start, goal) {
  const seen = new Set([start]);
  const stack = [[start, [start]]];
  while (stack.length) {
    const [file, route] = stack.pop();
    for (const next of depsOf(file)) {
      if (next === goal) return route;
      if (!seen.has(next)) {
        seen.add(next);
        stack.push([next, [...route, next]]);
      }
    }
  }
  return null;
}

export default {
  meta: { type: 'problem', docs: { description: 'no import cycles between project modules (type-only imports included)' }, schema: [] },
  create(context) {
    const file = context.filename;
    const root = context.cwd ?? process.cwd();
    const check = (node, spec) => {
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const target = resolve(file, spec);
      if (!target) return;
      const route = pathBack(target, file);
      if (route) {
        const names = [file, ...route, file].map((f) => path.relative(root, f));
        context.report({ node, message: `import cycle: ${names.join(' → ')}` });
      }
    };
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
      ImportExpression: (node) => node.source.type === 'Literal' && check(node, node.source.value),
    };
  },
};
