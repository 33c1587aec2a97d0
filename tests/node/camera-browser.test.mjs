// A real browser plays edged's video: the live page over WebSocket + Media
// Source Extensions, and a recorded range over HLS with hls.js. Chromium is
// Debian's (/usr/bin/chromium), driven headless through playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { startEdged } from './edged.mjs';

const require = createRequire(import.meta.url);
const HLS_JS = readFileSync(require.resolve('hls.js/dist/hls.min.js'));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let edged, browser;

before(async () => {
  edged = await startEdged(`cameras:
  - name: cam
    source: test://
    fragment_duration: 1s
    keyframe_interval: 1s
`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
  });
});

after(async () => {
  await browser?.close();
  assert.equal(await edged.stop(), 0);
});

// The video's time and a digest of its picture, read in the page.
async function sample(page, selector) {
  return page.evaluate((sel) => {
    const v = document.querySelector(sel);
    if (!v || v.videoWidth === 0) return { time: v ? v.currentTime : 0, digest: null };
    const c = document.createElement('canvas');
    c.width = 160;
    c.height = 90;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0, c.width, c.height);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < px.length; i += 4) h = (h * 31 + px[i] + px[i + 1] * 7 + px[i + 2] * 13) >>> 0;
    return { time: v.currentTime, digest: h, width: v.videoWidth };
  }, selector);
}

// Waits until the video plays: its time moves by a second and its picture
// changes between two looks.
async function assertPlays(page, selector, what) {
  const deadline = Date.now() + 30000;
  let first = null;
  while (Date.now() < deadline) {
    const s = await sample(page, selector);
    if (s.digest !== null) {
      if (first === null) first = s;
      else if (s.time - first.time >= 1 && s.digest !== first.digest) return s;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const last = await sample(page, selector);
  assert.fail(`${what} did not play: first ${JSON.stringify(first)}, last ${JSON.stringify(last)}`);
}

test('the live page plays the camera in the browser', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${edged.url}/camera?name=cam`);
  const supported = await page.evaluate(() =>
    MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c01e"'));
  assert.ok(supported, 'this Chromium has no H.264 for Media Source Extensions');
  const s = await assertPlays(page, '#live', 'the live video');
  assert.equal(s.width, 640);
  assert.equal(await page.textContent('#live-state'), 'live');
  // Every viewer shares the camera's pipeline: the camera counts this one.
  const status = await (await fetch(`${edged.url}/v1/cameras/cam`)).json();
  assert.equal(status.liveViewers, 1);
  assert.deepEqual(errors, []);
  await page.close();
});

test('low latency: a chunk per frame, played as it comes', async () => {
  const page = await browser.newPage();
  await page.goto(`${edged.url}/camera?name=cam&latency=low`);
  await assertPlays(page, '#live', 'the low-latency video');
  // Chunks, not fragments: at 15 frames a second, about 15 appends a second.
  const before = await page.evaluate(() => window.edgedLiveLatency.length);
  await new Promise((r) => setTimeout(r, 2000));
  const after = await page.evaluate(() => window.edgedLiveLatency.length);
  assert.ok(after - before >= 15, `${after - before} appends in 2 s`);
  await page.close();
});

test('the home page shows a live tile per camera', async () => {
  const page = await browser.newPage();
  await page.goto(`${edged.url}/`);
  await assertPlays(page, '.camera-tile video', 'the camera tile');
  await page.close();
});

test('hls.js plays a recorded range', async () => {
  // Let a few fragments be recorded, then play them back.
  await new Promise((r) => setTimeout(r, 4000));
  const end = Date.now() / 1000, start = end - 30;
  const playlist = `/v1/cameras/cam/hls/playlist.m3u8?start=${start}&end=${end}`;
  const text = await (await fetch(edged.url + playlist)).text();
  assert.match(text, /#EXT-X-ENDLIST/);

  const page = await browser.newPage();
  // A page on edged's origin (so that the playlist is same-origin) that loads
  // hls.js from the npm package.
  await page.route(`${edged.url}/test/**`, (route) => {
    if (route.request().url().endsWith('hls.min.js')) {
      return route.fulfill({ body: HLS_JS, contentType: 'text/javascript' });
    }
    return route.fulfill({
      contentType: 'text/html',
      body: `<video id="v" muted autoplay playsinline></video>
<script src="/test/hls.min.js"></script>
<script>
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) document.title = 'error ' + d.details; });
  hls.loadSource(${JSON.stringify(playlist)});
  hls.attachMedia(document.getElementById('v'));
  hls.on(Hls.Events.MANIFEST_PARSED, () => document.getElementById('v').play());
</script>`,
    });
  });
  await page.goto(`${edged.url}/test/hls.html`);
  await assertPlays(page, '#v', 'the recorded playlist');
  assert.doesNotMatch(await page.title(), /^error/);
  await page.close();
});
