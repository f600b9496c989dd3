// keyward webhooks list | create | test | deliveries | remove
import type { Command } from 'commander';
import { UsageError } from './client.js';
import type { Context } from './context.js';
import { json, table, when } from './output.js';

export function registerWebhookCommands(webhooks: Command, ctx: Context) {
  const hooks = async () => (await ctx.client()).webhooks;
  const out = (text: string): void => void ctx.io.stdout.write(text);

  webhooks
    .command('list')
    .description('List the webhook subscriptions (never their secrets)')
    .option('--json', 'print JSON')
    .exitOverride()
    .action(async (opts: { json?: boolean }) => {
      const list = await (await hooks()).list();
      if (opts.json) return out(json(list));
      if (list.length) {
        out(table(['ID', 'URL', 'ENABLED', 'EVENTS', 'FAILING SINCE'], list.map((w) => [w.id, w.url, w.isEnabled ? 'yes' : `no${w.disabledReason ? ' (by keyward)' : ''}`, w.eventTypes.join(', '), when(w.failingSince)])));
      }
    });

  webhooks
    .command('create')
    .description('Subscribe a URL to key events; prints the signing secret (whsec_…), which is not shown again')
    .requiredOption('--endpoint <url>', 'where events are POSTed (https; --url is the keyward server)')
    .requiredOption('--events <types>', 'comma-separated event types, e.g. apikey.expiring,apikey.revoked')
    .option('--description <text>', 'what it is for')
    .option('--json', 'print the subscription and its secret as JSON')
    .exitOverride()
    .action(async (opts: { endpoint: string; events: string; description?: string; json?: boolean }) => {
      const eventTypes = opts.events.split(',').map((s) => s.trim()).filter(Boolean);
      if (!eventTypes.length) throw new UsageError('--events: name at least one event type, e.g. apikey.expiring');
      const created = await (await hooks()).create({ url: opts.endpoint, eventTypes, ...(opts.description !== undefined ? { description: opts.description } : {}) });
      if (opts.json) return out(json(created));
      // The secret alone on stdout (SECRET=$(keyward webhooks create …)); what was made on stderr.
      out(`${created.secret}\n`);
      ctx.io.stderr.write(`created webhook ${created.id} for ${created.eventTypes.join(', ')}; its signing secret is shown only now\n`);
    });

  webhooks
    .command('test <id>')
    .description('Send a signed ping now and print how the attempt went (exit 1 when it failed)')
    .option('--json', 'print the delivery as JSON')
    .exitOverride()
    .action(async (id: string, opts: { json?: boolean }) => {
      const d = await (await hooks()).test(id);
      const a = d.attempts.at(-1);
      if (opts.json) out(json(d));
      else out(`${d.status}: ${a ? `${a.statusCode ?? 'no answer'} in ${a.durationMs} ms${a.error ? ` (${a.error})` : ''}` : 'not attempted'}\n`);
      if (d.status !== 'succeeded') ctx.exitCode = 1;
    });

  webhooks
    .command('deliveries <id>')
    .description('The delivery log of a subscription, newest first')
    .option('--limit <n>', 'how many (1–1000)', '20')
    .option('--json', 'print JSON (with every attempt)')
    .exitOverride()
    .action(async (id: string, opts: { limit: string; json?: boolean }) => {
      if (!/^\d{1,4}$/.test(opts.limit) || Number(opts.limit) < 1 || Number(opts.limit) > 1000) throw new UsageError('--limit: a number from 1 to 1000');
      const list = await (await hooks()).deliveries(id, Number(opts.limit));
      if (opts.json) return out(json(list));
      if (list.length) {
        out(
          table(
            ['CREATED', 'EVENT ID', 'TYPE', 'STATUS', 'ATTEMPTS', 'LAST'],
            list.map((d) => {
              const a = d.attempts.at(-1);
              return [when(d.createdAt), d.eventId, d.eventType, d.status, String(d.attemptCount), a ? (a.error ?? String(a.statusCode)) : '-'];
            }),
          ),
        );
      }
    });

  webhooks
    .command('remove <id>')
    .description('Delete a subscription, its queue and its delivery log')
    .exitOverride()
    .action(async (id: string) => {
      await (await hooks()).remove(id);
      ctx.io.stderr.write(`removed webhook ${id}\n`);
    });
}
