// Standard input and the terminal: piped ids, a piped key, and yes/no confirmations.
import { openSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { ReadStream } from 'node:tty';
import { UsageError } from './client.js';

export interface Io {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** All of standard input. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  stream.setEncoding('utf8'); // whole characters, even when a chunk ends inside one
  let text = '';
  for await (const chunk of stream) text += chunk;
  return text;
}

/**
 * Key ids from piped text: one per line, or the JSON that `list --json` / `get --json` /
 * `--pass-thru --json` print (an array of keys, one key, or an array of ids).
 */
export function idsFromText(text: string): string[] {
  const trimmed = text.replace(/^\uFEFF/, '').trim();
  if (!trimmed) return [];
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new UsageError('standard input starts like JSON but is not valid JSON');
    }
    const items = Array.isArray(parsed) ? parsed : [parsed];
    return items.map((item) => {
      const id = typeof item === 'string' ? item : (item as { id?: unknown } | null)?.id;
      if (typeof id !== 'string') throw new UsageError('standard input: every JSON item needs an "id"');
      return id;
    });
  }
  return trimmed
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/**
 * Asks `question` on the terminal and returns whether the answer was yes. Standard input is used
 * when it is a terminal; when it carries piped ids, the controlling terminal (/dev/tty) is.
 */
export async function confirm(io: Io, question: string): Promise<boolean> {
  let input: NodeJS.ReadableStream = io.stdin;
  let tty: ReadStream | undefined;
  if (!io.stdin.isTTY) {
    try {
      tty = new ReadStream(openSync('/dev/tty', 'r'));
      input = tty;
    } catch {
      throw new UsageError('cannot ask for confirmation: there is no terminal (use --force, or --what-if to preview)');
    }
  }
  const rl = createInterface({ input, output: io.stderr, terminal: false });
  try {
    io.stderr.write(`${question} [y/N] `);
    const answer = await new Promise<string>((resolve) => {
      rl.once('line', resolve);
      rl.once('close', () => resolve(''));
    });
    return /^(y|yes)$/i.test(answer.trim());
  } finally {
    rl.close();
    tty?.destroy();
  }
}
