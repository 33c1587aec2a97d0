// A real browser on the events page: a camera the test steers (the test RTSP
// server's "scene") starts moving, the motion event shows as a card with its
// snapshot and boxes, the subscribed function's output shows beside it, and
// the card opens the camera's page playing the recording from that moment.
// Chromium is Debian's, driven headless through playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { freePort, sleep, startEdged, until } from './edged.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const RTSP_SERVER = process.env.RTSP_SERVER ?? '../../build/tests/rtsp-server';
const EVENTS_RUNTIME = resolve(process.env.EDGED_SOURCE_ROOT ?? '../..', 'tests/functions/events/bootstrap');

let edged, browser, scene, lines, workdir;

// Sends a command to the scene and waits for its "ok".
async function command(what) {
  scene.stdin.write(`${what}\n`);
  assert.equal((await lines.next()).value, 'ok');
}

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), 'edged-events-'));
  const port = await freePort();
  scene = spawn(RTSP_SERVER, [String(port), '15', '320', '240', '15', '300'],
                { stdio: ['pipe', 'pipe', 'ignore'], env: { ...process.env, RTSP_PATTERN: 'scene' } });
  lines = createInterface({ input: scene.stdout })[Symbol.asyncIterator]();
  assert.equal((await lines.next()).value, 'ready');
  edged = await startEdged(`cameras:
  - name: porch
    source: rtsp://127.0.0.1:${port}/cam
    fragment_duration: 1s
    detect: motion
    event_cooldown: 1s
functions:
  - name: on-event
    bootstrap: ${EVENTS_RUNTIME}
    environment:
      RESULTS: ${join(workdir, 'results')}
event_source_mappings:
  - stream: events
    function: on-event
`);
  // A loaded machine (the CI's, running everything) takes a while to start
  // an RTSP session and cut three fragments.
  await until('the camera recording', async () =>
    (await (await fetch(`${edged.url}/v1/cameras/porch`)).json()).recorded.fragments >= 3, 45000);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  assert.equal(await edged.stop(), 0);
  scene.kill('SIGKILL');
  rmSync(workdir, { recursive: true, force: true });
});

test('the events page shows a detection and opens its recording', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${edged.url}/events`);
  await until('the page loaded', async () => (await page.textContent('#state')).includes('events'));
  assert.equal(await page.locator('.event').count(), 0, 'a still scene: no events');

  await command('move');
  const card = page.locator('.event').first();
  await card.waitFor({ timeout: 10000 });
  const id = await card.getAttribute('data-id');
  assert.match(await card.textContent(), /motion · porch/);
  // The snapshot loaded, with the moving square's box drawn over it.
  await until('the snapshot', () => card.locator('img').evaluate((img) => img.complete && img.naturalWidth > 0));
  assert.ok(await card.locator('.box').count() >= 1);
  assert.equal(await card.evaluate((a) => a.classList.contains('active')), true);

  // The function subscribed to the events stream ran; its output is shown.
  await until('the function output', async () =>
    (await page.textContent('#outputs')).includes(`event ${id} start`), 30000);

  await command('still');
  await until('the event ending', async () =>
    !(await page.locator(`.event[data-id="${id}"]`).evaluate((a) => a.classList.contains('active'))), 15000);

  // The card opens the camera page, playing the recording from the event.
  await Promise.all([page.waitForURL(/\/camera\?name=porch&time=/), card.click()]);
  const video = page.locator('#recorded');
  assert.match(await video.getAttribute('src'), /clip\.mp4\?start=.*&producer=1/);
  await until('the recording playable', () => video.evaluate((v) => v.readyState >= 1 && v.duration > 1), 20000);
  assert.deepEqual(errors, []);
  await page.close();
});
