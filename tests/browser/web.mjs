// Drives the web page of imgpipe.cgi in Debian's headless Chromium, as a person would:
// opens the upload form, uploads a CSV through it, follows to the status page, lets the
// page refresh itself until the batch ends, and reads what it shows.  Prints what it saw
// as one JSON object (85-web.bats checks it) and saves both pages as screenshots.
//
// usage: node web.mjs BASE_URL CSV WEBHOOK_URL OUT_DIR...
// Each OUT_DIR gets web-upload.png and web-status.png.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, csv, hook, ...outDirs] = process.argv.slice(2);
if (!base || !csv || !hook || outDirs.length === 0) {
  console.error('usage: node web.mjs BASE_URL CSV WEBHOOK_URL OUT_DIR...');
  process.exit(64);
}

// This machine's network is closed: without these, Chromium waits on connections of its own.
const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const BATCH_TIMEOUT_MS = 180000;   // an upper bound for the batch, not a measurement

async function screenshot(page, name) {
  for (const dir of outDirs) {
    await page.screenshot({ path: join(dir, name), fullPage: true });
  }
}

// The images of the page: how many there are and how many the browser could decode.
function images(page, selector) {
  return page.$$eval(selector, (imgs) => ({
    count: imgs.length,
    loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
  }));
}

async function run(page) {
  const seen = {};
  const home = await page.goto(`${base}/`);
  seen.home_status = home.status();
  seen.form = await page.$eval('form', (f) => [f.method, f.getAttribute('action'), f.enctype]);
  seen.fields = await page.$$eval('form input', (ins) => ins.map((i) => `${i.name}:${i.type}`));
  await screenshot(page, 'web-upload.png');

  await page.setInputFiles('input[name=file]', csv);
  await page.fill('input[name=webhook_url]', hook);
  await Promise.all([
    page.waitForURL(/\/status\/[0-9a-f]{32}$/),
    page.click('button[type=submit]'),
  ]);
  seen.batch = page.url().split('/').pop();

  // No reload from here: the page must refresh itself until the batch ends.
  await page.locator('.status.completed, .status.failed').waitFor({ timeout: BATCH_TIMEOUT_MS });
  // The images load lazily: scrolled to, each comes in.
  for (const img of await page.$$('img')) {
    await img.scrollIntoViewIfNeeded();
  }
  await page.waitForFunction(() => [...document.images].every((i) => i.complete));
  seen.status = await page.textContent('.status');
  seen.refreshes_when_ended = await page.$$eval('meta[http-equiv=refresh]', (m) => m.length);
  seen.progress = await page.$eval('progress', (p) => p.value);
  seen.heading = await page.textContent('h1');
  seen.products = await page.$$eval('tbody tr', (rows) => rows.map((r) =>
    [...r.cells].map((c) => c.innerText.trim().replace(/\s+/g, ' '))));
  seen.originals = await page.$$eval('a.original', (as) => as.map((a) => a.href));
  seen.after = await images(page, 'img[alt=after]');
  seen.lazy = await page.$$eval('img', (imgs) => [...new Set(imgs.map((i) => i.loading === 'lazy'))]);
  seen.after_srcs = await page.$$eval('img[alt=after]', (imgs) => imgs.map((i) => i.src));
  seen.csv_link = await page.getAttribute('a.csv', 'href');
  const csvAnswer = await page.request.get(new URL(seen.csv_link, page.url()).href);
  seen.csv_header = (await csvAnswer.text()).split('\n')[0];
  await screenshot(page, 'web-status.png');
  return seen;
}

const profile = mkdtempSync(join(tmpdir(), 'imgpipe-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args,
  viewport: { width: 1100, height: 760 },
});
let code = 0;
try {
  const page = context.pages()[0] ?? await context.newPage();
  console.log(JSON.stringify(await run(page)));
} catch (e) {
  console.error(`web.mjs: ${e.message}`);
  code = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
