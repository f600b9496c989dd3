// keyward apikey list | get | new | set | remove | rotate
import { Command, Option } from 'commander';
import { EXPIRES_IN_HINT, expiresIn } from '../lib/duration.js';
import { CliError, EXIT, UsageError, type ApiKey, type RotatedApiKey } from './client.js';
import type { Context } from './context.js';
import { json, keyDetails, keyTable, when } from './output.js';
import { confirm, idsFromText } from './terminal.js';

interface ChangeOpts {
  name?: string;
  description?: string;
  roleIds?: string;
  expiresAt?: string;
  expiresIn?: string;
  enable?: boolean;
  disable?: boolean;
  allowedCidrs?: string;
  rateLimit?: string;
  changeReason?: string;
  passThru?: boolean;
  whatIf?: boolean;
  confirm?: boolean;
  force?: boolean;
  stdin?: boolean;
  json?: boolean;
}

function roleIdList(text: string): number[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      if (!/^\d{1,9}$/.test(s)) throw new UsageError(`--role-ids: "${s}" is not a role id (use e.g. 1,3)`);
      return Number(s);
    });
}

function expiry(opts: ChangeOpts, allowNone: boolean): string | null | undefined {
  if (opts.expiresIn !== undefined) {
    const at = expiresIn(opts.expiresIn);
    if (!at) throw new UsageError(`--expires-in: ${EXPIRES_IN_HINT}`);
    return at;
  }
  if (opts.expiresAt === undefined) return undefined;
  if (allowNone && opts.expiresAt.toLowerCase() === 'none') return null;
  return opts.expiresAt;
}

/** --allowed-cidrs: comma-separated blocks; "" or none for any address. The server judges each block (and names the bad one). */
function cidrList(text: string): string[] | null {
  const t = text.trim();
  if (t === '' || t.toLowerCase() === 'none') return null;
  return t
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const RATE_LIMIT_HINT = 'give LIMIT/WINDOW, e.g. 100/60s, 1000/1h or 50/30 (seconds), or none for the server default';
/** --rate-limit: "100/60s", "1000/1h", "50/30" (seconds); none for the server default. */
function rateLimitFlag(text: string): { limit: number; windowSeconds: number } | null {
  const t = text.trim();
  if (t.toLowerCase() === 'none') return null;
  const m = /^(\d{1,10})\s*\/\s*(\d{1,6})\s*([smhd]?)$/i.exec(t);
  if (!m) throw new UsageError(`--rate-limit: "${text}": ${RATE_LIMIT_HINT}`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[3].toLowerCase() as '' | 's' | 'm' | 'h' | 'd'];
  return { limit: Number(m[1]), windowSeconds: Number(m[2]) * unit };
}

/** The fields keyward adds beyond JIM's, from their flags (new and set alike). */
function beyondJim(opts: ChangeOpts, body: Record<string, unknown>) {
  if (opts.allowedCidrs !== undefined) body.allowedCidrs = cidrList(opts.allowedCidrs);
  if (opts.rateLimit !== undefined) body.rateLimit = rateLimitFlag(opts.rateLimit);
}

/** The server's limit on how long a rotated-out secret may keep working. */
const MAX_GRACE_SECONDS = 86_400;
const GRACE_RULE = 'must be 0 to 86400 seconds (24h): seconds (e.g. 3600) or a number and a unit (e.g. 30m, 12h, 1d)';

/** --grace-period in seconds: plain seconds (3600, or 3600s), or an --expires-in duration (30m, 12h, 1d). */
function gracePeriod(text: string): number {
  const t = text.trim();
  let seconds: number;
  if (/^\d+s?$/.test(t)) seconds = Number(t.replace(/s$/, ''));
  else {
    // The duration after the epoch is the duration itself.
    const at = expiresIn(t, 0);
    if (!at) throw new UsageError(`--grace-period: "${text}" is not a duration; it ${GRACE_RULE}`);
    seconds = Date.parse(at) / 1000;
  }
  if (seconds > MAX_GRACE_SECONDS) throw new UsageError(`--grace-period: ${text} is ${seconds} seconds; it ${GRACE_RULE}`);
  return seconds;
}

/** 5400 -> "5400 s (90m)": the seconds sent, and what a person would call them. */
function span(seconds: number): string {
  const unit = seconds % 3600 === 0 ? `${seconds / 3600}h` : seconds % 60 === 0 ? `${seconds / 60}m` : '';
  return unit ? `${seconds} s (${unit})` : `${seconds} s`;
}

/** What became of the secret a rotation replaced. */
function oldSecret(k: RotatedApiKey): string {
  const which = k.previousKeyPrefix ? `the old secret (${k.previousKeyPrefix}…)` : 'the old secret';
  return k.previousKeyExpiresAt ? `${which} keeps working until ${when(k.previousKeyExpiresAt)}` : `${which} no longer works`;
}

const label = (k: { name: string; id: string }) => `"${k.name}" (${k.id})`;
const show = (v: unknown) => (v === null || v === undefined ? 'none' : Array.isArray(v) ? `[${v.join(', ')}]` : JSON.stringify(v));

/** "field: old -> new" for each field a PATCH would change. */
function describeChanges(current: ApiKey, body: Record<string, unknown>): string {
  const now: Record<string, unknown> = {
    name: current.name,
    description: current.description,
    roleIds: current.roles.map((r) => r.id),
    expiresAt: current.expiresAt,
    isEnabled: current.isEnabled,
    allowedCidrs: current.allowedCidrs ?? null,
    rateLimit: current.rateLimit ?? null,
  };
  const parts = Object.entries(body)
    .filter(([field]) => field !== 'changeReason')
    .map(([field, to]) => `${field} ${show(now[field])} -> ${show(to)}`);
  return parts.length ? parts.join(', ') : 'no field changes';
}

/** Ids from the argument, or from standard input with --stdin (not both). */
async function targetIds(ctx: Context, id: string | undefined, opts: ChangeOpts): Promise<string[]> {
  if (opts.stdin && id !== undefined) throw new UsageError('give an id or --stdin, not both');
  if (!opts.stdin) {
    if (id === undefined) throw new UsageError('an id is required (or --stdin to read ids from standard input)');
    return [id];
  }
  // Typing ids by hand would look like a hang; a pipe (or a file) is what --stdin is for.
  if (ctx.io.stdin.isTTY) throw new UsageError('--stdin: pipe the ids in (standard input is a terminal)');
  // Nothing piped (e.g. a list that matched nothing) means nothing to do, as in a PowerShell pipeline.
  return [...new Set(idsFromText(await ctx.stdin()))];
}

/** Runs `work` for each id; a failure is reported and the rest go on; the worst code is kept. */
async function eachId<T>(ctx: Context, ids: string[], work: (id: string) => Promise<T | undefined>): Promise<T[]> {
  const results: T[] = [];
  for (const id of ids) {
    try {
      const r = await work(id);
      if (r !== undefined) results.push(r);
    } catch (err) {
      if (!(err instanceof CliError) || err instanceof UsageError || ids.length === 1) throw err;
      ctx.io.stderr.write(`keyward: ${id}: ${err.message}\n`);
      ctx.exitCode = ctx.exitCode === EXIT.ERROR || err.exitCode === EXIT.ERROR ? EXIT.ERROR : err.exitCode;
    }
  }
  return results;
}

function printKeys(ctx: Context, keys: ApiKey[], opts: { json?: boolean }, many: boolean) {
  if (opts.json) ctx.io.stdout.write(json(many ? keys : keys[0]));
  else ctx.io.stdout.write(keys.map(keyDetails).join('\n'));
}

const flag = (flags: string, description: string) => new Option(flags, description);

export function registerKeyCommands(apikey: Command, ctx: Context) {
  const out = ctx.io.stdout;

  apikey
    .command('list')
    .description('List keys (ordered by name)')
    .option('--name <pattern>', 'name filter: * any run, ? one character, case-insensitive')
    .addOption(flag('--enabled', 'only enabled keys').conflicts('disabled'))
    .addOption(flag('--disabled', 'only disabled keys'))
    .option('--json', 'print JSON')
    .exitOverride()
    .action(async (opts: { name?: string; enabled?: boolean; disabled?: boolean; json?: boolean }) => {
      const isEnabled = opts.enabled ? true : opts.disabled ? false : undefined;
      const keys = await (await ctx.client()).list({ name: opts.name, isEnabled });
      out.write(opts.json ? json(keys) : keyTable(keys));
      if (!opts.json && !keys.length) ctx.io.stderr.write('keyward: no API keys match\n');
    });

  apikey
    .command('get')
    .description('Show one key')
    .argument('<id>', 'key id')
    .option('--json', 'print JSON')
    .exitOverride()
    .action(async (id: string, opts: { json?: boolean }) => {
      const key = await (await ctx.client()).get(id);
      printKeys(ctx, [key], opts, false);
    });

  apikey
    .command('new')
    .description('Create a key; with --pass-thru, print it (the only time the full key is shown)')
    .requiredOption('--name <name>', 'name')
    .option('--description <text>', 'description')
    .option('--role-ids <ids>', 'comma-separated role ids, e.g. 1,3 (see: keyward roles list)')
    .addOption(flag('--expires-at <iso>', 'expiry, RFC 3339 (e.g. 2027-02-24T10:00:00Z)').conflicts('expiresIn'))
    .option('--expires-in <duration>', 'expiry from now: 30m, 12h, 90d, 4w')
    .option('--allowed-cidrs <blocks>', 'address blocks the key may be used from, comma-separated, e.g. 10.0.0.0/8,2001:db8::/32')
    .option('--rate-limit <limit/window>', "the key's own request limit, e.g. 100/60s or 1000/1h")
    .option('--change-reason <text>', 'reason recorded in the change history')
    .option('--pass-thru', 'print the created key, including the secret')
    .option('--what-if', 'show what would be created; create nothing')
    .option('--confirm', 'ask before creating')
    .option('--json', 'with --pass-thru: print JSON')
    .exitOverride()
    .action(async (opts: ChangeOpts & { name: string }) => {
      const body: Record<string, unknown> = { name: opts.name, roleIds: opts.roleIds ? roleIdList(opts.roleIds) : [] };
      if (opts.description !== undefined) body.description = opts.description;
      const expiresAt = expiry(opts, false);
      if (expiresAt !== undefined) body.expiresAt = expiresAt;
      beyondJim(opts, body);
      if (opts.changeReason !== undefined) body.changeReason = opts.changeReason;
      const what = `create API key "${opts.name}" (roles ${show(body.roleIds)}, expires ${show(body.expiresAt)})`;
      if (opts.whatIf) return void out.write(`What if: would ${what}\n`);
      if (opts.confirm && !(await confirm(ctx.io, `Really ${what}?`))) return void ctx.io.stderr.write('keyward: not created\n');
      const created = await (await ctx.client()).create(body);
      if (!opts.passThru) {
        // As New-JIMApiKey, nothing on stdout; but a person must not believe they can fetch it later.
        return void ctx.io.stderr.write(
          `keyward: created API key "${created.name}" (id ${created.id}); its secret was not shown and cannot be recovered (use --pass-thru to see it when creating)\n`,
        );
      }
      ctx.io.stderr.write('keyward: this is the only time the full key is shown: store it now (it cannot be retrieved later).\n');
      out.write(opts.json ? json(created) : keyDetails(created));
    });

  apikey
    .command('set')
    .description('Change the given fields of a key (PATCH); other fields stay as they are')
    .argument('[id]', 'key id (or --stdin)')
    .option('--name <name>', 'new name')
    .option('--description <text>', 'new description ("" clears it)')
    .option('--role-ids <ids>', 'replace the roles: comma-separated ids ("" removes all)')
    .addOption(flag('--expires-at <iso|none>', 'new expiry (RFC 3339), or none to remove it').conflicts('expiresIn'))
    .option('--expires-in <duration>', 'new expiry from now: 30m, 12h, 90d, 4w')
    .addOption(flag('--enable', 'enable the key').conflicts('disable'))
    .addOption(flag('--disable', 'disable the key'))
    .option('--allowed-cidrs <blocks>', 'replace the address allowlist: comma-separated blocks ("" or none: any address)')
    .option('--rate-limit <limit/window>', "the key's own request limit, e.g. 100/60s or 1000/1h (none: the server default)")
    .option('--change-reason <text>', 'reason recorded in the change history')
    .option('--pass-thru', 'print the key after the change')
    .option('--what-if', 'show what would change; change nothing')
    .option('--confirm', 'ask before changing each key')
    .option('--stdin', 'read key ids (one per line, or `list --json` output) from standard input')
    .option('--json', 'with --pass-thru: print JSON')
    .exitOverride()
    .action(async (id: string | undefined, opts: ChangeOpts) => {
      const body: Record<string, unknown> = {};
      if (opts.name !== undefined) body.name = opts.name;
      if (opts.description !== undefined) body.description = opts.description === '' ? null : opts.description;
      if (opts.roleIds !== undefined) body.roleIds = roleIdList(opts.roleIds);
      const expiresAt = expiry(opts, true);
      if (expiresAt !== undefined) body.expiresAt = expiresAt;
      if (opts.enable) body.isEnabled = true;
      if (opts.disable) body.isEnabled = false;
      beyondJim(opts, body);
      if (opts.changeReason !== undefined) body.changeReason = opts.changeReason;
      if (!Object.keys(body).some((k) => k !== 'changeReason')) {
        throw new UsageError('nothing to change: give at least one of --name, --description, --role-ids, --expires-at, --expires-in, --enable, --disable, --allowed-cidrs, --rate-limit');
      }
      const client = await ctx.client(); // first: with --api-key-stdin the key is stdin's first line
      const ids = await targetIds(ctx, id, opts);
      const changed = await eachId(ctx, ids, async (target) => {
        if (opts.whatIf || opts.confirm) {
          const current = await client.get(target);
          const what = `update API key ${label(current)}: ${describeChanges(current, body)}`;
          if (opts.whatIf) return void out.write(`What if: would ${what}\n`);
          if (!(await confirm(ctx.io, `Really ${what}?`))) return void ctx.io.stderr.write(`keyward: ${target}: not changed\n`);
        }
        return client.patch(target, body);
      });
      if (opts.passThru && changed.length) printKeys(ctx, changed, opts, ids.length > 1 || !!opts.stdin);
    });

  apikey
    .command('remove')
    .description('Delete a key; asks first on a terminal unless --force')
    .argument('[id]', 'key id (or --stdin)')
    .option('--force', 'do not ask (required when standard input is not a terminal)')
    .option('--change-reason <text>', 'reason recorded in the change history')
    .option('--pass-thru', 'print the deleted key')
    .option('--what-if', 'show what would be deleted; delete nothing (even with --force)')
    .option('--confirm', 'ask before deleting each key, even with --force')
    .option('--stdin', 'read key ids (one per line, or `list --json` output) from standard input')
    .option('--json', 'with --pass-thru: print JSON')
    .exitOverride()
    .action(async (id: string | undefined, opts: ChangeOpts) => {
      const ask = !opts.whatIf && (opts.confirm || !opts.force);
      // Piped input cannot answer a question: without --force the removal is refused outright
      // (with --force and --confirm, the question goes to the terminal).
      if (!opts.whatIf && !opts.force && !ctx.io.stdin.isTTY) {
        throw new UsageError('refusing to delete without confirmation: standard input is not a terminal (add --force, or --what-if to preview)');
      }
      const client = await ctx.client(); // first: with --api-key-stdin the key is stdin's first line
      const ids = await targetIds(ctx, id, opts);
      const removed = await eachId(ctx, ids, async (target) => {
        if (opts.whatIf || ask) {
          const current = await client.get(target);
          const what = `delete API key ${label(current)}`;
          if (opts.whatIf) return void out.write(`What if: would ${what}\n`);
          if (!(await confirm(ctx.io, `Really ${what}?`))) return void ctx.io.stderr.write(`keyward: ${target}: not deleted\n`);
        }
        return client.remove(target, opts.changeReason);
      });
      if (opts.passThru && removed.length) printKeys(ctx, removed, opts, ids.length > 1 || !!opts.stdin);
    });

  apikey
    .command('rotate')
    .description('Give a key a new secret (same id, roles and settings) and print it: the only time it is shown')
    .argument('<id>', 'key id')
    .option('--grace-period <duration>', 'keep the old secret working this long: seconds (3600) or 30m, 12h, 1d; at most 86400 s (default 0: it stops at once)')
    .option('--change-reason <text>', 'reason recorded in the change history')
    .option('--pass-thru', 'print the whole key with its new secret (without it: the secret alone)')
    .option('--what-if', 'show what would be rotated; change nothing')
    .option('--confirm', 'ask before rotating')
    .option('--json', 'with --pass-thru: print JSON')
    .exitOverride()
    .action(async (id: string, opts: { gracePeriod?: string; changeReason?: string; passThru?: boolean; whatIf?: boolean; confirm?: boolean; json?: boolean }) => {
      const body: { gracePeriodSeconds?: number; changeReason?: string } = {};
      if (opts.gracePeriod !== undefined) body.gracePeriodSeconds = gracePeriod(opts.gracePeriod);
      if (opts.changeReason !== undefined) body.changeReason = opts.changeReason;
      const client = await ctx.client();
      if (opts.whatIf || opts.confirm) {
        const current = await client.get(id);
        const grace = body.gracePeriodSeconds ?? 0;
        const what = `rotate API key ${label(current)}: a new secret; the old one (${current.keyPrefix}…) ${grace ? `keeps working for ${span(grace)}` : 'stops working at once'}`;
        if (opts.whatIf) return void out.write(`What if: would ${what}\n`);
        if (!(await confirm(ctx.io, `Really ${what}?`))) return void ctx.io.stderr.write(`keyward: ${id}: not rotated\n`);
      }
      const rotated = await client.rotate(id, body);
      // Unlike `new`, the secret is printed without --pass-thru too: the key is in use, and a
      // rotation whose secret nobody saw would leave it with no working secret once the grace ends.
      ctx.io.stderr.write('keyward: this is the only time the full key is shown: store it now (it cannot be retrieved later).\n');
      ctx.io.stderr.write(`keyward: rotated API key ${label(rotated)}; ${oldSecret(rotated)}\n`);
      out.write(opts.passThru ? (opts.json ? json(rotated) : keyDetails(rotated)) : `${rotated.key}\n`);
    });
}
