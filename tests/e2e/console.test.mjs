// End to end, in a real browser: the web console served by Workers Static Assets under
// `wrangler dev`, driven through Debian's Chromium by playwright-core. `SCREENSHOTS=1` also writes
// each view to docs/screenshots/ (the README shows them).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { ROOT, startGateway } from './gateway-process.mjs';

const KEY = 'sk-imagegate-console';
const MANAGEMENT_KEY = 'sk-imagegate-console-management';
const XSS = '<img src=x onerror=alert(1)>';
const digest = (key) => createHash('sha256').update(key).digest('hex');
const SHOTS = process.env.SCREENSHOTS ? path.join(ROOT, 'docs/screenshots') : null;
let gateway;
let browser;
let page;
const errors = [];
const dialogs = [];

before(async () => {
  gateway = await startGateway({
    webConsole: true,
    config: {
      log_prompts: true,
      providers: [{ id: 'imagegate', kind: 'test_pattern' }],
      models: [{ id: 'imagegate/test-pattern', provider: 'imagegate', pricing: [{ cost_usd: 0.002, unit: 'image' }] }],
      routes: [{ id: '5b0e7a8c-1d2e-4f30-9a4b-5c6d7e8f9a0b', identifier: 'acme/thumbs', description: 'Small thumbnails', model: 'imagegate/test-pattern', defaults: { size: '64x64' } }],
    },
    secrets: { IMAGEGATE_KEYS: `console:${digest(KEY)}`, IMAGEGATE_ADMIN_KEY: MANAGEMENT_KEY },
  });
  // Something for the route's chart: two generations through it.
  for (const prompt of ['one', 'two']) {
    const res = await fetch(`${gateway.baseURL}/v1/routes/acme/thumbs/use`, {
      method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ prompt }),
    });
    assert.equal(res.status, 200);
  }
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('dialog', async (dialog) => { dialogs.push(dialog.message()); await dialog.dismiss(); });
}, { timeout: 180_000 });

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

const shot = async (name) => {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
};

test('the console is served at / with a strict CSP, and /console leads there', async () => {
  const res = await page.goto(`${gateway.baseURL}/`);
  assert.equal(res.status(), 200);
  const csp = res.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /img-src 'self' data:/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  const redirect = await fetch(`${gateway.baseURL}/console`, { redirect: 'manual' });
  assert.equal(redirect.status, 308);
  assert.equal(redirect.headers.get('location'), '/');
});

test('type the key, generate with the test pattern, and see the image decoded in the page', async () => {
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Use key' }).click();
  assert.equal(await page.evaluate(() => location.search + document.cookie + localStorage.length), '0', 'the key is in no URL, cookie or localStorage');
  await page.getByLabel('Prompt').fill('a lighthouse at dusk');
  await page.getByLabel('Model').selectOption('imagegate/test-pattern');
  await page.getByLabel('Size').selectOption('256x256');
  await page.getByRole('button', { name: 'Generate' }).click();
  const image = page.getByAltText('Generated image 1');
  await image.waitFor();
  assert.equal(await image.evaluate(async (img) => { await img.decode(); return img.naturalWidth; }), 256);
  assert.match(await page.locator('.facts').innerText(), /cost: \$0\.002/);
  await shot('playground');
});

test('a prompt with markup is shown as text and runs nothing', async () => {
  await page.getByLabel('Prompt').fill(XSS);
  await page.getByRole('button', { name: 'Generate' }).click();
  await page.getByAltText('Generated image 1').waitFor();
  await page.getByRole('link', { name: 'History' }).click();
  const rows = page.locator('tr.row');
  await rows.first().waitFor();
  assert.ok(await rows.count() >= 4, 'the route\'s two and the playground\'s two');
  await rows.first().getByRole('button', { name: /Open action/ }).click();
  const detail = page.locator('pre').first();
  await detail.waitFor();
  assert.match(await detail.innerText(), /<img src=x onerror=alert\(1\)>/, 'the prompt, as its characters');
  assert.equal(await page.locator('main img[src="x"]').count(), 0, 'no element was made of it');
  assert.deepEqual(dialogs, []);
  await shot('history');
});

test('a route shows its chart with data, and the keys view the usage', async () => {
  await page.getByRole('link', { name: 'Routes' }).click();
  const chart = page.locator('svg.chart').first();
  await chart.waitFor();
  const heights = await chart.locator('rect').evaluateAll((rects) => rects.map((r) => Number(r.getAttribute('height'))));
  assert.ok(heights.some((h) => h > 0), 'a bar for the route\'s generations');
  assert.match(await page.locator('main').innerText(), /request fields: .*prompt/);
  assert.equal(await page.locator('svg.chart').count(), 3, 'requests and errors, latency, cost');
  await shot('routes');
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.getByText(/spent: \$0\.\d+/).waitFor();
  await page.getByRole('cell', { name: 'imagegate/test-pattern' }).waitFor();
  await shot('keys');
});

test('with the management key the keys view creates and deletes a key', async () => {
  await page.getByLabel('API key').fill(MANAGEMENT_KEY);
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.getByLabel('Name').fill('from the console');
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.getByText(/New key \(shown once/).waitFor();
  await page.getByRole('cell', { name: 'from the console', exact: true }).waitFor();
  await page.getByRole('button', { name: 'Delete from the console' }).click();
  await page.getByRole('cell', { name: 'from the console', exact: true }).waitFor({ state: 'detached' });
});

test('a phone-width page keeps its controls reachable, and nothing was logged as an error', async () => {
  await page.setViewportSize({ width: 390, height: 800 });
  await page.getByRole('link', { name: 'Playground' }).click();
  await page.getByText(/cannot generate/).waitFor();
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Use key' }).click();
  await page.getByRole('button', { name: 'Generate' }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling (${overflow} px)`);
  assert.deepEqual(errors, [], 'no console errors');
});

test("the README's page weight is the console's, gzipped", () => {
  const dir = path.join(ROOT, 'console');
  const bytes = readdirSync(dir).filter((f) => !f.startsWith('_')).reduce((sum, f) => sum + gzipSync(readFileSync(path.join(dir, f)), { level: 9 }).length, 0);
  const stated = /page weight[^\d]*([\d.]+) KiB/i.exec(readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
  assert.ok(stated, 'the README states the page weight');
  assert.ok(Math.abs(Number(stated[1]) - bytes / 1024) < 0.5, `README says ${stated[1]} KiB, the files are ${(bytes / 1024).toFixed(1)} KiB gzipped`);
});
