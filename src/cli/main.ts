// `keyward`: the API key cmdlets' semantics (Get-/New-/Set-/Remove-JIMApiKey with -WhatIf,
// -Confirm, -Force, -PassThru) as a command line over HTTP. bin/keyward.mjs starts it.
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { CliError, createClient, EXIT, UsageError } from './client.js';
import type { Context } from './context.js';
import { registerKeyCommands } from './key-commands.js';
import { json, roleTable } from './output.js';
import { readAll, type Io } from './terminal.js';
import { registerWebhookCommands } from './webhook-commands.js';

const DEFAULT_URL = 'http://127.0.0.1:3000';

/** A key as a header can carry it; the message never repeats it. */
function checkedKey(key: string, from: string): string {
  if (!key) throw new UsageError(`${from}: the API key is empty`);
  if (!/^[\x21-\x7e]+$/.test(key)) throw new UsageError(`${from}: the API key has spaces or characters a header cannot carry (value not shown)`);
  return key;
}

async function resolveKey(opts: Record<string, unknown>, env: Record<string, string | undefined>, ctx: Context): Promise<string> {
  const sources = ['apiKeyFile', 'apiKeyStdin', 'apiKey'].filter((k) => opts[k] !== undefined);
  if (sources.length > 1) throw new UsageError('give the key one way: --api-key-file, --api-key-stdin or --api-key');
  if (opts.apiKeyFile !== undefined) {
    const file = String(opts.apiKeyFile);
    const info = await stat(file).catch(() => null);
    if (!info?.isFile()) throw new UsageError(`--api-key-file: cannot read ${file}`);
    if (info.mode & 0o077) ctx.io.stderr.write(`keyward: warning: ${file} is readable by other users; chmod 600 it\n`);
    // The first line: a trailing newline (or a comment after it) is not part of the key.
    return checkedKey((await readFile(file, 'utf8')).split(/\r?\n/)[0].trim(), '--api-key-file');
  }
  if (opts.apiKeyStdin) {
    if (ctx.io.stdin.isTTY) throw new UsageError('--api-key-stdin: pipe the key in (standard input is a terminal, where it would be echoed)');
    const text = await ctx.stdin();
    const newline = text.indexOf('\n');
    // The first line is the key; what follows stays available to --stdin.
    const key = (newline < 0 ? text : text.slice(0, newline)).trim();
    ctx.stdin = async () => (newline < 0 ? '' : text.slice(newline + 1));
    return checkedKey(key, '--api-key-stdin');
  }
  if (opts.apiKey !== undefined) return checkedKey(String(opts.apiKey), '--api-key');
  if (env.KEYWARD_API_KEY) return checkedKey(env.KEYWARD_API_KEY.trim(), 'KEYWARD_API_KEY');
  throw new UsageError('no API key: set KEYWARD_API_KEY, or use --api-key-file PATH or --api-key-stdin');
}

/** Whatever the parser echoes (an unknown option with its value) never shows a key. */
const redact = (text: string) => text.replace(/jim_ak_[\x21-\x7e]*/g, 'jim_ak_…');

export function buildProgram(ctx: Context, env: Record<string, string | undefined>): Command {
  const program = new Command('keyward')
    .description('Manage the API keys of a keyward (or JIM-compatible) server.')
    .version((createRequire(import.meta.url)('../../package.json') as { version: string }).version)
    .option('--url <url>', `server URL (env KEYWARD_URL; default ${DEFAULT_URL})`)
    .option('--api-key-file <path>', 'read the API key from this file (env KEYWARD_API_KEY otherwise)')
    .option('--api-key-stdin', 'read the API key from the first line of standard input')
    .addOption(new Option('--api-key <key>', 'the API key itself (shows in the process list: prefer the others)'))
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({
      writeOut: (s) => ctx.io.stdout.write(redact(s)),
      writeErr: (s) => ctx.io.stderr.write(redact(s)),
    })
    .exitOverride()
    .hook('preAction', () => {
      if (program.opts().apiKey !== undefined) {
        ctx.io.stderr.write('keyward: warning: a key given with --api-key is visible to other users in the process list; use KEYWARD_API_KEY or --api-key-file\n');
      }
    });

  ctx.client = async () => {
    const opts = program.opts();
    const key = await resolveKey(opts, env, ctx);
    const client = createClient(String(opts.url ?? env.KEYWARD_URL ?? DEFAULT_URL), key);
    ctx.client = async () => client;
    return client;
  };

  const apikey = program.command('apikey').description('API keys: list, get, new, set, remove, rotate').exitOverride();
  registerKeyCommands(apikey, ctx);

  const webhooks = program.command('webhooks').description('Webhook subscriptions: list, create, test, deliveries, remove').exitOverride();
  registerWebhookCommands(webhooks, ctx);

  const roles = program.command('roles').description('Roles').exitOverride();
  roles
    .command('list')
    .description('List the roles and their permissions')
    .option('--json', 'print JSON')
    .exitOverride()
    .action(async (opts: { json?: boolean }) => {
      const list = await (await ctx.client()).roles();
      ctx.io.stdout.write(opts.json ? json(list) : roleTable(list));
    });
  return program;
}

/** Runs the command line; resolves to the exit code (0 ok, 1 error, 2 not found, 3 usage). */
export async function main(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  let stdinText: Promise<string> | undefined;
  const ctx: Context = {
    io,
    client: async () => {
      throw new Error('not ready');
    },
    stdin: () => (stdinText ??= readAll(io.stdin)),
    exitCode: EXIT.OK,
  };
  const program = buildProgram(ctx, env);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help, `help`, --version end here with 0; usage mistakes (and a bare `keyward`) with 3.
      return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    if (err instanceof CliError) {
      io.stderr.write(`keyward: ${redact(err.message)}\n`);
      return err.exitCode;
    }
    io.stderr.write(`keyward: ${redact(err instanceof Error ? err.message : String(err))}\n`);
    return EXIT.ERROR;
  }
}
