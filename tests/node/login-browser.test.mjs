// A real browser against an edged with authentication on: the pages send
// it to the login page, a wrong key is refused there, the admin key signs
// in, and then everything the pages use works on the session cookie alone:
// the REST API, the camera's live WebSocket, its snapshot. Signing out ends
// it. The pages' Content-Security-Policy must not block anything they do.
// Chromium is Debian's, driven headless through playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startEdged, until } from './edged.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let edged, browser, key;

before(async () => {
  edged = await startEdged(`cameras:
  - name: demo
    source: test://
    fragment_duration: 1s
`, `  auth:
    enabled: "on"
`);
  key = readFileSync(join(edged.dir, 'data', 'admin.key'), 'utf8').trim();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  assert.equal(await edged.stop(), 0);
});

test('sign in, watch live, sign out', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && /Content Security Policy/.test(m.text())) errors.push(m.text()); });

  // Without a session: the login page, with the way back.
  await page.goto(`${edged.url}/camera?name=demo`);
  await page.waitForURL(/\/login\?next=/);
  assert.match(decodeURIComponent(page.url()), /next=\/camera\?name=demo/);

  await page.fill('#credential', 'edk_' + '0'.repeat(48));
  await page.click('button[type=submit]');
  await until('the refusal', async () => /not valid/.test(await page.textContent('#message')));

  await page.fill('#credential', key);
  await Promise.all([page.waitForURL(/\/camera\?name=demo$/), page.click('button[type=submit]')]);

  // The live view plays over its WebSocket, on the cookie.
  const video = page.locator('#live');
  await until('live video playing', () => video.evaluate((v) => v.readyState >= 2 && v.currentTime > 0.5), 20000);
  await until('the camera facts', async () => /test:\/\//.test(await page.textContent('#facts')));
  const snapshot = await page.evaluate(async () => (await fetch('/v1/cameras/demo/snapshot.jpg')).status);
  assert.equal(snapshot, 200);

  // Signing out ends the session: the next call goes back to the login page.
  await page.goto(`${edged.url}/`);
  await page.locator('#sign-out').waitFor();
  await Promise.all([page.waitForURL(/\/login/), page.click('#sign-out')]);
  assert.equal(await page.evaluate(async () => (await fetch('/v1/cameras')).status), 401);
  assert.deepEqual(errors, []);
  await page.close();
});
