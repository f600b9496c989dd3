// The web console (/console) in a real browser: Debian's Chromium driven by playwright-core, as
// in test/explorer.test.ts. A key's whole lifecycle goes through the console's UI (sign in,
// create, search, edit, disable, rotate, history, usage, delete), with the API checked from
// Node; and on every page: nothing leaves the origin, no console error or CSP violation, no
// secret in a URL, in storage or in any response but its creation/rotation, and axe-core finds
// no serious or critical accessibility violation. Without Chromium (and without
// KEYWARD_REQUIRE_BROWSER=1) the browser part is skipped with a notice; the inject checks run.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Fastify from 'fastify';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import consolePlugin, { CONSOLE_CSP } from '../src/plugins/console.js';
import { handleError } from '../src/plugins/errors.js';
import { EXPLORER_HEADERS } from '../src/plugins/openapi.js';
import { buildTestApp } from './helpers/app.js';
import { ADMIN, READER, seedKey, type SeededKey } from './helpers/keys.js';
import { ROOT } from './helpers/server-process.js';
import { startReceiver, type Receiver } from './helpers/webhook-receiver.js';

// The page's globals, for the functions page.evaluate runs in the browser (the server's
// TypeScript project has no DOM library).
declare const document: any, window: any, localStorage: any, sessionStorage: any;
type HTMLElement = any;

const CHROMIUM = '/usr/bin/chromium';
// Debian's /usr/bin/chromium is a wrapper that adds flags from /etc/chromium.d; run the binary.
const BINARY = existsSync('/usr/lib/chromium/chromium') ? '/usr/lib/chromium/chromium' : CHROMIUM;
const available = existsSync(CHROMIUM);
/** Not loopback, so the page's origin is a plain host name, as a deployment's would be. */
const HOST = 'keyward.test';
const required = process.env.KEYWARD_REQUIRE_BROWSER === '1';
const ARTIFACTS = path.join(ROOT, 'test-results', 'console');
const UPDATE_SCREENSHOTS = process.env.KEYWARD_UPDATE_SCREENSHOTS === '1';
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const BUILT = path.join(ROOT, 'dist', 'console');
/** Webhooks on, delivering over plain HTTP to the loopback receiver only (as in test/webhooks.test.ts). */
const WEBHOOK_ENV = {
  WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'),
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32',
  WEBHOOK_POLL_MS: '50',
  WEBHOOK_TIMEOUT_MS: '1000',
  SCHEDULER_INTERVAL_MS: '86400000',
};

if (!available && !required) {
  console.warn(`[console] ${CHROMIUM} not found: browser test skipped (apt-get install -y chromium; .ci/run does)`);
}

// The console is built from console/ by the same script `npm start` and `npm run build` run (a
// no-op when dist/console is newer than its sources).
beforeAll(() => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/build-console.mjs')], { cwd: ROOT, stdio: 'inherit', timeout: 120_000 });
}, 150_000);

describe('serving /console', () => {
  let app: App;
  beforeAll(async () => {
    app = await buildTestApp();
  });

  it('answers index.html with the strict CSP and the explorer headers, and so does every built asset', async () => {
    const res = await app.inject({ method: 'GET', url: '/console/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers).toMatchObject(EXPLORER_HEADERS);
    for (const directive of ["script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'self'", "form-action 'self'", "img-src 'self' data:"]) {
      expect(CONSOLE_CSP.split('; ')).toContain(directive);
    }
    expect(CONSOLE_CSP).not.toContain('unsafe');
    // No inline script (only <script src>), no style attribute, nothing from another host.
    const html = res.body;
    for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
      expect(m[1]).toMatch(/\bsrc="\/console\//);
      expect(m[2].trim()).toBe('');
    }
    expect(html).not.toMatch(/\sstyle\s*=/i);
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);
    const assets = [...html.matchAll(/(?:src|href)="(\/console\/[^"]+)"/g)].map((m) => m[1]);
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true);
    for (const url of assets) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode, url).toBe(200);
      expect(r.headers['content-security-policy'], url).toBe(CONSOLE_CSP);
      expect(r.headers, url).toMatchObject(EXPLORER_HEADERS);
      // Named by a hash of their content: cached for good.
      expect(r.headers['cache-control'], url).toBe('public, max-age=31536000, immutable');
    }
  });

  it('redirects /console to /console/, answers index.html for unknown paths below it, and is not in the OpenAPI document', async () => {
    const bare = await app.inject({ method: 'GET', url: '/console' });
    expect(bare.statusCode).toBe(302);
    expect(bare.headers.location).toBe('/console/');
    expect(bare.headers['content-security-policy']).toBe(CONSOLE_CSP);
    for (const url of ['/console/keys/123', '/console/no/such/file.js', '/console/index.html']) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode, url).toBe(200);
      expect(r.body, url).toContain('<div id="root">');
      expect(r.headers['cache-control'], url).toBe('no-cache');
    }
    const head = await app.inject({ method: 'HEAD', url: '/console/' });
    expect(head.statusCode).toBe(200);
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/console'))).toEqual([]);
  });

  it('answers 503 CONSOLE_NOT_BUILT (problem+json, never a 500) when dist/console is missing', async () => {
    const bare = Fastify({ routerOptions: { ignoreTrailingSlash: true } });
    bare.setErrorHandler(handleError);
    await bare.register(consolePlugin, { dir: path.join(ROOT, 'dist', 'no-console-here') });
    for (const url of ['/console', '/console/', '/console/keys']) {
      const r = await bare.inject({ method: 'GET', url });
      expect(r.statusCode, url).toBe(503);
      expect(r.headers['content-type']).toBe('application/problem+json');
      expect(r.json()).toMatchObject({ status: 503, code: 'CONSOLE_NOT_BUILT' });
      expect(r.json().detail).toContain('npm run build');
      expect(r.headers['content-security-policy']).toBe(CONSOLE_CSP);
    }
    await bare.close();
  });

  it('finds the build from src/ (tsx) and from dist/ (compiled) alike', async () => {
    expect(existsSync(path.join(BUILT, 'index.html'))).toBe(true);
  });
});

/** What a context saw: every request, every response body, console errors, CSP violations. */
interface Watch {
  requests: string[];
  responses: Array<Promise<{ url: string; method: string; status: number; body: string }>>;
  problems: string[];
}

function watch(context: BrowserContext): Watch {
  const w: Watch = { requests: [], responses: [], problems: [] };
  context.on('request', (r) => w.requests.push(r.url()));
  context.on('response', (r) => {
    w.responses.push(
      r
        .text()
        .catch(() => '')
        .then((body) => ({ url: r.url(), method: r.request().method(), status: r.status(), body })),
    );
  });
  return w;
}

function watchPage(page: Page, w: Watch) {
  page.on('console', (m) => {
    // Chromium ignores COOP on plain HTTP to a non-loopback name, and says so: not ours to fix.
    if (/Cross-Origin-Opener-Policy header has been ignored/.test(m.text())) return;
    if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) w.problems.push(m.text());
  });
  page.on('pageerror', (e) => w.problems.push(`pageerror: ${e.message}`));
}

describe.skipIf(!available && !required)('the web console in Chromium', () => {
  let app: App;
  let admin: SeededKey;
  let reader: SeededKey;
  let base: string;
  let direct: string;
  let browser: Browser;
  let rx: Receiver;
  /** Every secret a test knows of, and the responses allowed to carry each. */
  const secrets: Array<{ secret: string; allowedIn: (url: string, method: string) => boolean }> = [];
  const none = () => false;

  beforeAll(async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is required here (KEYWARD_REQUIRE_BROWSER=1)`).toBe(true);
    app = await buildTestApp({ env: WEBHOOK_ENV });
    admin = await seedKey(app, { roleIds: [ADMIN], name: 'console-admin' });
    reader = await seedKey(app, { roleIds: [READER], name: 'console-reader' });
    await seedKey(app, { name: 'console-expiring', expiresAt: new Date(Date.now() + 2 * 24 * 3600_000).toISOString() });
    secrets.push({ secret: admin.secret, allowedIn: none }, { secret: reader.secret, allowedIn: none });
    rx = await startReceiver();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as AddressInfo).port;
    base = `http://${HOST}:${port}`;
    direct = `http://127.0.0.1:${port}`;
    browser = await chromium.launch({
      executablePath: BINARY,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
      ],
    });
    await mkdir(ARTIFACTS, { recursive: true });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await rx?.close();
  });

  const apiCall = (secret: string, method: string, p: string, body?: unknown) =>
    fetch(`${direct}/api/v1${p}`, {
      method,
      headers: { 'x-api-key': secret, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });

  async function newPage() {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const seen = watch(context);
    // Reported by the page itself, in case Chromium's console message wording changes.
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e: { violatedDirective: string; blockedURI: string }) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
    });
    const page = await context.newPage();
    watchPage(page, seen);
    return { context, page, w: seen };
  }

  /** axe-core on the page as it is now: no serious or critical violation. Then a screenshot. */
  const violations: string[] = [];
  async function check(page: Page, name: string) {
    await page.waitForLoadState('networkidle');
    if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
    const found = await page.evaluate(async () => {
      const axe = (window as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<{ violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: string[] }> }> }> } }).axe;
      const r = await axe.run(document, { resultTypes: ['violations'] });
      return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    });
    violations.push(...found.map((f) => `${name}: ${f}`));
    await shot(page, name);
  }
  const shot = (page: Page, name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true }).catch(() => {});

  /** Presses Tab until the focused element matches; fails after `max` presses. */
  async function tabTo(page: Page, want: (el: { tag: string; id: string; text: string }) => boolean, max = 60) {
    for (let i = 0; i < max; i++) {
      await page.keyboard.press('Tab');
      const el = await page.evaluate(() => {
        const a = document.activeElement as HTMLElement | null;
        return { tag: a?.tagName.toLowerCase() ?? '', id: a?.id ?? '', text: (a?.textContent ?? '').trim() };
      });
      if (want(el)) return;
    }
    throw new Error('the wanted element never took the focus');
  }

  /** The checks every page of a context must pass, whatever it did. */
  async function assertClean(context: BrowserContext, page: Page, w: Watch) {
    const origin = new URL(base).origin;
    expect(w.requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:')), 'requests that left the origin').toEqual([]);
    expect(w.problems, 'console errors, page errors, CSP violations').toEqual([]);
    const responses = await Promise.all(w.responses);
    const storage = await page.evaluate(() => JSON.stringify({ ...localStorage })).catch(() => '{}');
    expect(storage, 'localStorage holds nothing').toBe('{}');
    const cookies = await context.cookies();
    expect(cookies).toEqual([]);
    for (const { secret, allowedIn } of secrets) {
      const tail = secret.slice(16); // its part after the prefix, which is shown openly
      for (const u of w.requests) expect(u, 'a secret in a URL').not.toContain(tail);
      for (const r of responses) if (!allowedIn(r.url, r.method)) expect(r.body, `a secret in the response to ${r.method} ${r.url}`).not.toContain(tail);
      expect(storage).not.toContain(tail);
    }
    expect(violations, 'axe-core: serious or critical violations').toEqual([]);
  }

  it('walks a key through its whole life in the console, by keyboard and pointer', async () => {
    const { context, page, w } = await newPage();
    let where = 'sign-in';
    try {
      await page.goto(`${base}/console/`);
      await page.getByLabel('API key').waitFor();
      await check(page, '01-sign-in');

      // Keyboard only: sign in, then create a key (Tab, typing, Space, Enter; no click).
      await tabTo(page, (el) => el.id === 'api-key');
      await page.keyboard.type(admin.secret);
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor();
      expect(await page.evaluate(() => sessionStorage.getItem('keyward.apiKey'))).toBe(admin.secret);
      await page.getByRole('cell', { name: 'console-reader' }).waitFor();
      await check(page, '02-keys');
      if (UPDATE_SCREENSHOTS) await screenshotForDocs(page, 'console-keys.png');

      where = 'create';
      await tabTo(page, (el) => el.tag === 'a' && el.text === 'Create a key');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { level: 1, name: 'Create a key' }).waitFor();
      await tabTo(page, (el) => el.id === 'create-name');
      await page.keyboard.type('console-made-key');
      await page.keyboard.press('Tab');
      await page.keyboard.type('made through the console');
      await tabTo(page, (el) => el.id === `create-role-${READER}`);
      await page.keyboard.press('Space');
      await tabTo(page, (el) => el.tag === 'button' && el.text === 'Create the key');
      await check(page, '03-create');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { level: 1, name: 'Key created' }).waitFor();
      await expect.poll(() => page.getByText('you will not see this again').count()).toBe(1);
      const secret = await page.getByTestId('secret').inputValue();
      expect(secret).toMatch(/^jim_ak_/);
      await check(page, '04-created');
      const created = (await (await apiCall(admin.secret, 'GET', '/apikeys?name=console-made-key')).json()) as Array<{ id: string; roles: Array<{ id: number }> }>;
      expect(created).toHaveLength(1);
      expect(created[0].roles.map((r) => r.id)).toEqual([READER]);
      const id = created[0].id;
      secrets.push({ secret, allowedIn: (u, m) => m === 'POST' && new URL(u).pathname === '/api/v1/apikeys' });

      // Search with the API's wildcards.
      where = 'search';
      await page.getByRole('link', { name: 'Keys', exact: true }).click();
      await page.getByLabel('Name', { exact: true }).fill('console-m?de-*');
      await page.getByRole('button', { name: 'Search' }).click();
      await expect.poll(() => page.locator('table.keys tbody tr').count()).toBe(1);
      // The state filters: idle (the API's unusedSince) and expiring soon (over the list).
      await app.services.lastUsed.flush();
      const names = () => page.locator('table.keys tbody tr td:first-child').allTextContents();
      await page.getByLabel('Name', { exact: true }).fill('');
      await page.getByLabel('Show').selectOption('idle');
      await page.getByLabel('Not used for (days)').fill('1');
      await page.getByRole('button', { name: 'Search' }).click();
      await expect.poll(names).toEqual(['console-expiring', 'console-made-key', 'console-reader']);
      await page.getByLabel('Show').selectOption('expiring');
      await page.getByRole('button', { name: 'Search' }).click();
      await expect.poll(names).toEqual(['console-expiring']);
      // Sorted by a column's button, descending on the second press.
      await page.getByLabel('Show').selectOption('all');
      await page.getByRole('button', { name: 'Search' }).click();
      await expect.poll(names).toEqual(['console-admin', 'console-expiring', 'console-made-key', 'console-reader']);
      await page.getByRole('button', { name: 'Name' }).click();
      await expect.poll(names).toEqual(['console-reader', 'console-made-key', 'console-expiring', 'console-admin']);
      expect(await page.getByRole('columnheader', { name: /Name/ }).getAttribute('aria-sort')).toBe('descending');
      await check(page, '02b-keys-filtered');
      await page.getByRole('link', { name: 'console-made-key' }).click();

      // Edit the description.
      where = 'edit';
      await page.getByRole('heading', { level: 1, name: 'Key console-made-key' }).waitFor();
      await page.getByRole('button', { name: 'Edit' }).click();
      const dialog = page.getByRole('dialog', { name: 'Edit the key' });
      await dialog.waitFor();
      // Focus moved into the dialog, on its first field.
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('edit-name');
      await dialog.getByLabel('Description').fill('edited in the console');
      await dialog.getByLabel('Reason for the change').fill('CHG-1: describe it');
      await check(page, '05-edit');
      await dialog.getByRole('button', { name: 'Save' }).click();
      await page.getByText('edited in the console').waitFor();
      // Escape closes a dialog, and the focus goes back to what opened it.
      await page.getByRole('button', { name: 'Edit' }).click();
      await dialog.waitFor();
      await page.keyboard.press('Escape');
      await dialog.waitFor({ state: 'hidden' });
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Edit');

      // Traffic with the new key, from outside the browser: 3 accepted, 1 refused (403).
      for (let i = 0; i < 3; i++) expect((await apiCall(secret, 'GET', '/userinfo')).status).toBe(200);
      expect((await apiCall(secret, 'POST', '/apikeys', { name: 'not-allowed' })).status).toBe(403);

      // Disable it in the console: the API refuses it at once.
      where = 'disable';
      await page.getByRole('button', { name: 'Disable' }).click();
      await page.getByText('The key is disabled').waitFor();
      const refused = await apiCall(secret, 'GET', '/userinfo');
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { code: string }).code).toBe('API_KEY_DISABLED');
      await check(page, '06-key-disabled');

      // Enable (a disabled key cannot be rotated), then rotate with an hour's grace.
      where = 'rotate';
      await page.getByRole('button', { name: 'Enable' }).click();
      await page.getByRole('button', { name: 'Disable' }).waitFor();
      await page.getByRole('button', { name: 'Rotate' }).click();
      const rotate = page.getByRole('dialog', { name: 'Rotate the key' });
      await rotate.getByLabel('Grace period').fill('3600');
      await rotate.getByLabel('Reason').fill('CHG-2: yearly rotation');
      await check(page, '07-rotate');
      await rotate.getByRole('button', { name: 'Rotate' }).click();
      await page.getByText('you will not see this again').waitFor();
      const rotated = await page.getByTestId('secret').inputValue();
      expect(rotated).toMatch(/^jim_ak_/);
      expect(rotated).not.toBe(secret);
      secrets.push({ secret: rotated, allowedIn: (u, m) => m === 'POST' && new URL(u).pathname === `/api/v1/apikeys/${id}/rotate` });
      expect((await apiCall(rotated, 'GET', '/userinfo')).status).toBe(200);
      expect((await apiCall(secret, 'GET', '/userinfo')).status).toBe(200); // the grace period
      await page.getByText('Previous secret (grace period)').waitFor();
      await check(page, '08-key-rotated');

      // The history: version 1 (create) and 2 (the edit) side by side.
      where = 'history';
      await page.getByRole('link', { name: 'Change history' }).click();
      await page.getByRole('heading', { level: 1, name: 'Change history of console-made-key' }).waitFor();
      await page.getByLabel('From version').selectOption('1');
      await page.getByLabel('To version').selectOption('2');
      await page.getByRole('button', { name: 'Compare' }).click();
      const diff = page.getByTestId('diff');
      await diff.waitFor();
      expect(await diff.locator('thead th').allTextContents()).toEqual(['Field', 'Version 1', 'Version 2']);
      const row = diff.locator('tr.changed', { hasText: 'description' });
      expect(await row.locator('td').allTextContents()).toEqual(['made through the console', 'edited in the console']);
      expect(await diff.locator('tr.changed').count()).toBe(1);
      await check(page, '09-history');

      // Usage after the traffic (flushed first): 5 valid, 1 refused for permissions, 1 disabled.
      where = 'usage';
      await app.services.usage.flush();
      await page.goto(`${base}/console/#/keys/${id}/usage`);
      const totals = page.getByRole('table', { name: 'Totals by outcome' });
      await totals.waitFor();
      const cell = (o: string) => totals.locator(`td[data-outcome="${o}"]`).textContent();
      expect(await cell('VALID')).toBe('5');
      expect(await cell('INSUFFICIENT_PERMISSIONS')).toBe('1');
      expect(await cell('DISABLED')).toBe('1');
      expect(await page.getByRole('img', { name: /Requests with console-made-key per hour/ }).count()).toBe(1);
      await check(page, '10-key-usage');
      await page.getByRole('link', { name: 'Usage', exact: true }).click();
      const top = page.getByRole('table', { name: /Requests per key/ });
      await top.waitFor();
      await top.getByRole('link', { name: 'console-made-key' }).waitFor();
      await check(page, '11-usage');
      if (UPDATE_SCREENSHOTS) await screenshotForDocs(page, 'console-usage.png');

      // Security events: the disabled key's refusal, once flushed.
      where = 'security-events';
      await app.services.securityEvents.flush();
      await page.getByRole('link', { name: 'Security events' }).click();
      await page.getByRole('cell', { name: 'API_KEY_DISABLED' }).waitFor();
      await check(page, '12-security-events');

      // Roles: built-in ones read-only; an application role created.
      where = 'roles';
      await page.getByRole('link', { name: 'Roles' }).click();
      await page.getByRole('rowheader', { name: 'Administrator' }).waitFor();
      expect(await page.getByRole('row', { name: /Administrator/ }).getByRole('button').count()).toBe(0);
      await page.getByRole('button', { name: 'Create a role' }).click();
      const roleDialog = page.getByRole('dialog', { name: 'Create a role' });
      await roleDialog.getByLabel('Name').fill('orders-reader');
      await roleDialog.getByLabel('Permissions').fill('orders.read\norders.items.*');
      await check(page, '13-role-create');
      await roleDialog.getByRole('button', { name: 'Create the role' }).click();
      await page.getByRole('rowheader', { name: 'orders-reader' }).waitFor();
      const roles = (await (await apiCall(admin.secret, 'GET', '/roles')).json()) as Array<{ name: string; permissions: string[] }>;
      expect(roles.find((r) => r.name === 'orders-reader')?.permissions.sort()).toEqual(['orders.items.*', 'orders.read']);
      // Edited and deleted again (an application role no key holds).
      await page.getByRole('button', { name: 'Edit orders-reader' }).click();
      const editRole = page.getByRole('dialog', { name: 'Edit the role' });
      await editRole.getByLabel('Description').fill('the orders service, read-only');
      await editRole.getByRole('button', { name: 'Save' }).click();
      await page.getByRole('cell', { name: 'the orders service, read-only' }).waitFor();
      await check(page, '14-roles');
      await page.getByRole('button', { name: 'Delete orders-reader' }).click();
      await page.getByRole('dialog', { name: 'Delete the role' }).getByRole('button', { name: 'Delete the role' }).click();
      await page.getByText('Role orders-reader deleted.').waitFor();
      await expect.poll(() => page.getByRole('rowheader', { name: 'orders-reader' }).count()).toBe(0);

      // Webhooks: create one (its whsec_ secret shown once), see its delivery log.
      where = 'webhooks';
      await page.getByRole('link', { name: 'Webhooks' }).click();
      await page.getByText('No webhook yet.').waitFor();
      await page.getByRole('button', { name: 'Create a webhook' }).click();
      const hookDialog = page.getByRole('dialog', { name: 'Create a webhook' });
      await hookDialog.getByLabel('Address').fill(rx.url);
      await hookDialog.getByRole('button', { name: 'Create the webhook' }).click();
      await page.getByText('you will not see this again').waitFor();
      const whsec = await page.getByTestId('secret').inputValue();
      expect(whsec).toMatch(/^whsec_/);
      secrets.push({ secret: whsec, allowedIn: (u, m) => m === 'POST' && new URL(u).pathname === '/api/v1/webhooks' });
      await page.getByRole('link', { name: /^Deliveries/ }).click();
      await page.getByRole('heading', { name: `Deliveries to ${rx.url}` }).waitFor();
      await check(page, '15-webhooks');

      // Delete with the typed confirmation: the button waits for the exact name.
      where = 'delete';
      await page.goto(`${base}/console/#/keys/${id}`);
      await page.getByRole('button', { name: 'Delete' }).click();
      const del = page.getByRole('dialog', { name: 'Delete the key' });
      const confirm = del.getByRole('button', { name: 'Delete for good' });
      expect(await confirm.isDisabled()).toBe(true);
      await del.getByLabel(/Type the key's name/).fill('console-made');
      expect(await confirm.isDisabled()).toBe(true);
      await del.getByLabel(/Type the key's name/).fill('console-made-key');
      await check(page, '16-delete');
      await confirm.click();
      await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor();
      expect((await apiCall(admin.secret, 'GET', `/apikeys/${id}`)).status).toBe(404);
      expect((await apiCall(rotated, 'GET', '/userinfo')).status).toBe(401);

      // Sign out: the tab forgets the key.
      where = 'sign-out';
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('API key').waitFor();
      expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
      await page.reload();
      await page.getByLabel('API key').waitFor();
      await assertClean(context, page, w);
    } finally {
      await shot(page, `zz-lifecycle-last-${where}`);
      await context.close();
    }
  }, 180_000);

  it('offers a Reader key no write action, and the skip link reaches the content', async () => {
    const { context, page, w } = await newPage();
    try {
      await page.goto(`${base}/console/`);
      await page.getByLabel('API key').fill(reader.secret);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { level: 1, name: 'API keys' }).waitFor();
      // Reader: apikeys.read, audit.read, roles.read; no webhooks.read.
      const nav = page.getByRole('navigation', { name: 'Main' });
      expect(await nav.getByRole('link').allTextContents()).toEqual(['Keys', 'Usage', 'Security events', 'Roles']);
      expect(await page.getByRole('link', { name: 'Create a key' }).count()).toBe(0);
      await page.getByRole('link', { name: 'console-admin' }).click();
      await page.getByText('may read this key but not change it').waitFor();
      for (const name of ['Edit', 'Disable', 'Rotate', 'Delete']) expect(await page.getByRole('button', { name, exact: true }).count(), name).toBe(0);
      await check(page, 'reader-key');
      await page.getByRole('link', { name: 'Roles' }).click();
      await page.getByRole('rowheader', { name: 'Reader', exact: true }).waitFor();
      expect(await page.getByRole('button', { name: /Create a role|Edit|Delete/ }).count()).toBe(0);
      await check(page, 'reader-roles');
      // The skip link is the first stop of the keyboard, and moves the focus to the content.
      await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
      await page.keyboard.press('Enter');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('main');
      expect(page.url()).toContain('#/roles');
      await page.getByRole('button', { name: 'Sign out' }).click();
      expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
      await assertClean(context, page, w);
    } finally {
      await shot(page, 'zz-reader-last');
      await context.close();
    }
  }, 90_000);

  it('shows the server\'s own detail when it refuses, and says clearly when webhooks are off', async () => {
    const off = await buildTestApp();
    const offAdmin = await seedKey(off, { roleIds: [ADMIN], name: 'off-admin' });
    await off.listen({ host: '127.0.0.1', port: 0 });
    const offBase = `http://${HOST}:${(off.server.address() as AddressInfo).port}`;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const problems: string[] = [];
    const consoleErrors: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    try {
      await page.goto(`${offBase}/console/`);
      await page.getByLabel('API key').fill('jim_ak_' + 'x'.repeat(40));
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').getByText('The API key is invalid.').waitFor();
      await page.getByLabel('API key').fill(offAdmin.secret);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('link', { name: 'Webhooks' }).click();
      const notice = page.getByTestId('webhooks-off');
      await notice.getByText('Webhooks are switched off on this server.').waitFor();
      expect(await notice.textContent()).toContain('WEBHOOK_SECRET_KEY');
      await check(page, 'webhooks-off');
      expect(problems).toEqual([]);
      // The refusals this test provoked reach the console listener (so the other tests' empty
      // lists mean something): Chromium logs each failed fetch.
      expect(consoleErrors.some((t) => /status of 401/.test(t)), consoleErrors.join('\n')).toBe(true);
      expect(consoleErrors.some((t) => /status of 503/.test(t)), consoleErrors.join('\n')).toBe(true);
      expect(violations).toEqual([]);
    } finally {
      await shot(page, 'zz-webhooks-off-last');
      await context.close();
      await off.close();
    }
  }, 90_000);
});

/** docs/screenshots/ (committed, shown by the README) when KEYWARD_UPDATE_SCREENSHOTS=1. */
async function screenshotForDocs(page: Page, file: string) {
  const dir = path.join(ROOT, 'docs', 'screenshots');
  await mkdir(dir, { recursive: true });
  const tmp = path.join(ARTIFACTS, file);
  await page.screenshot({ path: tmp, fullPage: false });
  await copyFile(tmp, path.join(dir, file));
}
