// Live latency, from the moment a frame enters edged's pipeline (captured,
// for a local camera; received, for an RTSP camera) to the moment headless
// Chromium appends it to its Media Source buffer, for the live page in its
// low-latency mode (a CMAF chunk per frame) and in its normal mode (whole
// fragments).
//
//   tests/node/node_modules/.bin/node bench/media/live-latency.mjs [SECONDS] [BUILD_DIR]
//
// Sources: test:// at 1280x720, 30 fps (encoded by x264 in edged), and a
// 1280x720, 30 fps, 2 Mb/s RTSP camera (tests/rtsp-server) recorded as it
// comes. Prints p50 and p95 per source and mode, in milliseconds, and
// edged's peak RSS. edged's fragments carry Unix time (in 90 kHz units) as
// their decode time, which is what the page compares with its own clock:
// both run on this machine.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'tests/node/package.json'));
const { chromium } = require('playwright-core');
const { freePort } = await import(join(root, 'tests/node/edged.mjs'));

const SECONDS = Number(process.argv[2] ?? 20);
const BUILD = process.argv[3] ?? join(root, 'build');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function percentile(values, p) {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor(p / 100 * v.length))];
}

function peakRss(pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
  return Number(line.split(/\s+/)[1]) * 1024;
}

const rtspPort = await freePort();
const rtsp = spawn(join(BUILD, 'tests/rtsp-server'), [String(rtspPort), '60', '1280', '720', '30', '2000'],
                   { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((r) => rtsp.stdout.once('data', r));

const dir = mkdtempSync(join(tmpdir(), 'edged-latency-'));
const port = await freePort();
writeFileSync(join(dir, 'edged.yaml'), `data_dir: ${join(dir, 'data')}
log:
  level: warning
gateway:
  listen: 127.0.0.1:${port}
  access_log: false
cameras:
  - name: test720
    source: test://
    width: 1280
    height: 720
    fps: 30
    bitrate_kbps: 2000
  - name: rtsp720
    source: rtsp://127.0.0.1:${rtspPort}/cam
`);
const edged = spawn(join(BUILD, 'edge/edged'), ['--config', join(dir, 'edged.yaml')],
                    { stdio: ['ignore', 'ignore', openSync(join(dir, 'edged.log'), 'w')] });
const url = `http://127.0.0.1:${port}`;
for (let i = 0; i < 200; i++) {
  try { if ((await fetch(`${url}/healthz`)).ok) break; } catch { /* starting */ }
  await sleep(50);
}
await sleep(5000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
});
console.log(`# ${SECONDS} s per row; latency in ms from the frame entering edged to Chromium's append`);
console.log('| source | mode | appends | p50 | p95 |');
console.log('|---|---|---|---|---|');
try {
  for (const camera of ['test720', 'rtsp720']) {
    for (const low of [true, false]) {
      const page = await browser.newPage();
      await page.goto(`${url}/camera?name=${camera}${low ? '&latency=low' : ''}`);
      // Normal mode has no chunk marks: measure fragments' first frames by
      // hooking the same counter for every append.
      if (!low) {
        await page.evaluate(() => {
          const append = SourceBuffer.prototype.appendBuffer;
          SourceBuffer.prototype.appendBuffer = function (data) {
            const b = new Uint8Array(data.buffer ?? data);
            if (b.length > 8 && b[4] === 0x6d && b[5] === 0x6f && b[6] === 0x6f && b[7] === 0x66) {
              for (let j = 8; j + 20 < Math.min(b.length, 512); j++) {
                if (b[j] === 0x74 && b[j + 1] === 0x66 && b[j + 2] === 0x64 && b[j + 3] === 0x74) {
                  const v = new DataView(b.buffer, b.byteOffset + j + 4);
                  const t = (v.getUint32(4) * 4294967296 + v.getUint32(8)) / 90;
                  // The fragment's newest frame entered edged at about its end.
                  window.edgedLiveLatency.push(Date.now() - t);
                  break;
                }
              }
            }
            return append.call(this, data);
          };
        });
      }
      await sleep(3000);
      await page.evaluate(() => { window.edgedLiveLatency.length = 0; });
      await sleep(SECONDS * 1000);
      const values = await page.evaluate(() => window.edgedLiveLatency);
      await page.close();
      if (values.length === 0) throw new Error(`${camera}: nothing appended`);
      console.log(`| ${camera} | ${low ? 'low latency (chunk per frame)' : 'normal (2 s fragments, first frame)'} | ` +
                  `${values.length} | ${percentile(values, 50).toFixed(0)} | ${percentile(values, 95).toFixed(0)} |`);
    }
  }
  console.log(`\nedged peak RSS (two cameras, one encoding 720p30): ${(peakRss(edged.pid) / 2 ** 20).toFixed(1)} MiB`);
} finally {
  await browser.close();
  edged.kill('SIGTERM');
  rtsp.kill('SIGKILL');
  await new Promise((r) => edged.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
