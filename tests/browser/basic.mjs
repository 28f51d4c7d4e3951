// Uses the web page of an imgpipe.cgi that wants tokens, in Debian's headless Chromium, as
// a person would with HTTP Basic: without credentials, or with a wrong token, the page is
// refused; with the token
// as the password the browser answers the challenge, and the form uploads a CSV and leads
// to the batch's own status page.  Prints what it saw as one JSON object (62-access.bats
// checks it).
//
// usage: node basic.mjs BASE_URL TOKEN CSV
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, token, csv] = process.argv.slice(2);
if (!base || !token || !csv) {
  console.error('usage: node basic.mjs BASE_URL TOKEN CSV');
  process.exit(64);
}

// This machine's network is closed: without these, Chromium waits on connections of its own.
const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// What the browser makes of the page: its status, or the network error it stopped at
// (headless, a Basic challenge with no credentials to answer it ends as
// net::ERR_INVALID_AUTH_CREDENTIALS; answered wrongly, the page is the 401).
async function refusal(context) {
  try {
    return (await (await context.newPage()).goto(`${base}/`)).status();
  } catch (e) {
    return e.message.match(/net::[A-Z_]+/)?.[0] ?? e.message;
  } finally {
    await context.close();
  }
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args });
let code = 0, step = 'starting';
try {
  const seen = {};
  step = 'without credentials, and with a wrong token';
  const stranger = await browser.newContext();
  const challenge = await stranger.request.get(`${base}/`);
  seen.challenge = [challenge.status(), challenge.headers()['www-authenticate']];
  seen.without = await refusal(stranger);
  seen.wrong = await refusal(await browser.newContext({
    httpCredentials: { username: 'shop', password: `${token}x` } }));

  step = 'with the token';
  const tenant = await browser.newContext({ httpCredentials: { username: 'shop', password: token } });
  const page = await tenant.newPage();
  seen.with = (await page.goto(`${base}/`)).status();
  await page.setInputFiles('input[name=file]', csv);
  await Promise.all([
    page.waitForURL(/\/status\/[0-9a-f]{32}$/),
    page.click('button[type=submit]'),
  ]);
  seen.batch = page.url().split('/').pop();
  seen.heading = await page.textContent('h1');
  await tenant.close();
  console.log(JSON.stringify(seen));
} catch (e) {
  console.error(`basic.mjs: ${step}: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
