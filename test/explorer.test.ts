// The API explorer (/docs) in a real browser: Debian's Chromium driven by playwright-core.
// Authorise through the explorer's dialog, "Try it out" on GET /api/v1/apikeys, read the 200 in
// the page; the page talks to no other host and breaks no rule of its Content-Security-Policy.
// .ci/run installs Chromium and sets KEYWARD_REQUIRE_BROWSER=1; elsewhere, without Chromium,
// this file is skipped with a notice (the README's `npm test` needs only the npm registry).
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.js';
import { EXPLORER_CSP } from '../src/plugins/openapi.js';
import { buildTestApp } from './helpers/app.js';
import { ADMIN, seedKey, type SeededKey } from './helpers/keys.js';
import { ROOT } from './helpers/server-process.js';

const CHROMIUM = '/usr/bin/chromium';
// Debian's /usr/bin/chromium is a wrapper that adds flags from /etc/chromium.d; run the binary.
const BINARY = existsSync('/usr/lib/chromium/chromium') ? '/usr/lib/chromium/chromium' : CHROMIUM;
const available = existsSync(CHROMIUM);
/** A host name that is not loopback (Swagger UI hides its validator badge on 127.0.0.1 and localhost). */
const HOST = 'keyward.test';
const required = process.env.KEYWARD_REQUIRE_BROWSER === '1';
export const ARTIFACTS = path.join(ROOT, 'test-results');

if (!available && !required) {
  console.warn(`[explorer] ${CHROMIUM} not found: browser test skipped (apt-get install -y chromium; .ci/run does)`);
}

describe.skipIf(!available && !required)('the API explorer in Chromium', () => {
  let app: App;
  let admin: SeededKey;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is required here (KEYWARD_REQUIRE_BROWSER=1)`).toBe(true);
    app = await buildTestApp();
    admin = await seedKey(app, { roleIds: [ADMIN], name: 'explorer-admin' });
    await seedKey(app, { name: 'shown-in-the-explorer' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://${HOST}:${(app.server.address() as AddressInfo).port}`;
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
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('serves the page with a strict Content-Security-Policy and the usual security headers', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-security-policy']).toBe(EXPLORER_CSP);
    expect(EXPLORER_CSP).toContain("script-src 'self'");
    expect(EXPLORER_CSP).toContain("connect-src 'self'");
    expect(EXPLORER_CSP).toContain("frame-ancestors 'none'");
    expect(res.headers).toMatchObject({ 'x-content-type-options': 'nosniff', 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' });
    // The validator badge would send the document to validator.swagger.io: switched off.
    const init = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    expect(init.body).toContain('"validatorUrl":null');
    // Every asset carries the same headers (static files included).
    for (const url of ['/docs/static/swagger-initializer.js', '/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-ui.css', '/docs/static/favicon-32x32.png', '/docs/json']) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode, url).toBe(200);
      expect(r.headers['content-security-policy'], url).toBe(EXPLORER_CSP);
      expect(r.headers['x-content-type-options'], url).toBe('nosniff');
    }
  });

  it('authorises with a key through its dialog, runs "Try it out" on GET /api/v1/apikeys and shows the 200', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const requests: string[] = [];
    const problems: string[] = [];
    const docsWithoutHeaders: string[] = [];
    context.on('request', (r) => requests.push(r.url()));
    context.on('response', (r) => {
      const h = r.headers();
      if (new URL(r.url()).pathname.startsWith('/docs') && (h['content-security-policy'] !== EXPLORER_CSP || h['x-content-type-options'] !== 'nosniff')) {
        docsWithoutHeaders.push(r.url());
      }
    });
    page.on('console', (m) => {
      // Chromium ignores COOP on plain HTTP to a non-loopback name, and says so: not ours to fix.
      if (/Cross-Origin-Opener-Policy header has been ignored/.test(m.text())) return;
      if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    try {
      await page.goto(`${base}/docs`, { waitUntil: 'networkidle' });
      await page.locator('.swagger-ui .info .title', { hasText: 'keyward' }).waitFor({ timeout: 20_000 });

      await page.locator('.swagger-ui .auth-wrapper button.authorize').click();
      const dialog = page.locator('.swagger-ui .dialog-ux .modal-ux');
      const apiKeyForm = dialog.locator('.auth-container', { hasText: 'ApiKeyHeader' });
      await apiKeyForm.locator('input').first().fill(admin.secret);
      await apiKeyForm.locator('button.authorize').click();
      // Accepted: the form says "Authorized", masks the value and offers "Logout".
      await apiKeyForm.locator('h6', { hasText: 'Authorized' }).waitFor();
      expect(await apiKeyForm.locator('button', { hasText: 'Logout' }).count()).toBe(1);
      await apiKeyForm.locator('button.btn-done').click();

      const op = page.locator('#operations-apikeys-listApiKeys');
      await op.locator('.opblock-summary').first().click();
      await op.locator('button.try-out__btn').click();
      await op.locator('button.execute').click();
      const live = op.locator('.live-responses-table .response').first();
      await live.waitFor({ timeout: 20_000 });
      expect((await live.locator('.response-col_status').textContent())?.trim()).toBe('200');
      const shown = (await live.locator('.response-col_description').textContent()) ?? '';
      expect(shown).toContain('shown-in-the-explorer');
      expect(shown).toContain('"keyPrefix"');
      expect(shown).not.toContain(admin.secret.slice(16)); // never a secret, not even the caller's

      // Nothing left this origin: the page, its scripts, the document and the call.
      const origin = new URL(base).origin;
      const foreign = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:'));
      expect(foreign).toEqual([]);
      expect(requests.some((u) => u.startsWith(`${origin}/api/v1/apikeys`))).toBe(true);
      expect(problems).toEqual([]);
      expect(docsWithoutHeaders).toEqual([]);
    } finally {
      // Whatever happened, leave the picture (test-results/ is not committed).
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'explorer.png'), fullPage: true }).catch(() => {});
      await context.close();
    }
  }, 90_000);
});
