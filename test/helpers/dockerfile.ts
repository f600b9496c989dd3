// A small Dockerfile reader: enough to check the file's facts and replay its steps without a
// Docker engine (test/container.test.ts). Handles line continuations, comments, ARG defaults
// in FROM, exec- and shell-form instructions.

export interface Instruction {
  op: string;
  /** The raw argument text (continuations joined). */
  args: string;
  /** Exec form (["a", "b"]) parsed, when the instruction uses it. */
  exec?: string[];
  flags: Record<string, string>;
}

export interface Stage {
  name: string;
  from: string;
  steps: Instruction[];
}

export function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (!current && /^\s*(#|$)/.test(line)) continue;
    if (current && /^\s*#/.test(line)) continue; // comments inside a continued instruction
    if (line.endsWith('\\')) {
      current += line.slice(0, -1) + ' ';
      continue;
    }
    logical.push((current + line).trim());
    current = '';
  }
  if (current.trim()) logical.push(current.trim());

  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\S+)\s*(.*)$/s.exec(line)!;
    const op = m[1].toUpperCase();
    let rest = m[2];
    const flags: Record<string, string> = {};
    while (/^--[a-z-]+(=\S+)?\s/.test(rest)) {
      const f = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest)!;
      flags[f[1]] = f[2] ?? 'true';
      rest = rest.slice(f[0].length);
    }
    const instruction: Instruction = { op, args: rest, flags };
    // HEALTHCHECK [flags] CMD [...]: kept as ["CMD", ...] in exec form.
    const health = op === 'HEALTHCHECK' && /^CMD\s+\[/.test(rest);
    const execText = health ? rest.replace(/^CMD\s+/, '') : rest;
    if (execText.startsWith('[')) {
      try {
        const words = JSON.parse(execText) as string[];
        instruction.exec = health ? ['CMD', ...words] : words;
      } catch {
        // shell form that happens to start with "["
      }
    }
    if (op === 'ARG' && !stages.length) {
      const [name, value = ''] = rest.split('=');
      args[name.trim()] = value.trim();
      continue;
    }
    if (op === 'FROM') {
      const [image, , name] = rest.split(/\s+/);
      const from = image.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => args[a ?? b] ?? '');
      stages.push({ name: name ?? String(stages.length), from, steps: [] });
      continue;
    }
    stages.at(-1)!.steps.push(instruction);
  }
  return { args, stages };
}

/** ENV instructions of a stage as a map (both `ENV a=b c=d` and `ENV a b`). */
export function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of stage.steps.filter((x) => x.op === 'ENV')) {
    const pairs = s.args.match(/(\w+)=("[^"]*"|\S*)/g);
    if (pairs) {
      for (const p of pairs) {
        const i = p.indexOf('=');
        env[p.slice(0, i)] = p.slice(i + 1).replace(/^"(.*)"$/, '$1');
      }
    } else {
      const [k, ...v] = s.args.split(/\s+/);
      env[k] = v.join(' ');
    }
  }
  return env;
}

/** COPY sources and destination (the last word). */
export function copyParts(step: Instruction): { sources: string[]; dest: string } {
  const words = step.exec ?? step.args.split(/\s+/);
  return { sources: words.slice(0, -1), dest: words.at(-1)! };
}
