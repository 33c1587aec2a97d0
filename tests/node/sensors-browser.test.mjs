// A real browser on the sensors page: the last hour of a sensor stream is
// read back when the page opens, readings published afterwards (through a
// real mosquitto) are plotted as they arrive, and the broker's state shows.
// Chromium is Debian's, driven headless through playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { freePort, sleep, startEdged, until } from './edged.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const MOSQUITTO = process.env.MOSQUITTO ?? '/usr/sbin/mosquitto';

let edged, browser, broker, brokerPort, brokerDir;

function publish(topic, doc) {
  execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(brokerPort), '-q', '1', '-t', topic,
                                 '-m', JSON.stringify(doc)]);
}

before(async () => {
  brokerDir = mkdtempSync(join(tmpdir(), 'edged-broker-'));
  brokerPort = await freePort();
  const conf = join(brokerDir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${brokerPort} 127.0.0.1\nallow_anonymous true\n`);
  broker = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  edged = await startEdged(`streams:
  - name: sensors
mqtt:
  brokers:
    - name: site
      host: 127.0.0.1
      port: ${brokerPort}
  subscriptions:
    - broker: site
      topic: sensors/#
      stream: sensors
      partition_key: \${topic(2)}
  rules:
    - name: watch-probe
      broker: site
      sql: SELECT * FROM 'sensors/probe-new/telemetry'
      republish: seen/probe
`);
  await until('edged connected to the broker', async () =>
    (await (await fetch(`${edged.url}/v1/mqtt`)).json()).brokers[0].connected);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  assert.equal(await edged.stop(), 0);
  broker.kill('SIGTERM');
  rmSync(brokerDir, { recursive: true, force: true });
});

test('the sensors page plots history and live readings', async () => {
  // A reading from before the page opened: it comes back from the stream.
  publish('sensors/probe-old/telemetry', { temperature: 11.5 });
  await until('the old reading stored', async () =>
    (await (await fetch(`${edged.url}/v1/mqtt`)).json()).subscriptions[0].stored >= 1);

  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${edged.url}/sensors`);
  const legend = (field, sensor) =>
    `figure[data-field="${field}"] .legend span[data-sensor="${sensor}"]`;
  await page.waitForSelector(legend('temperature', 'probe-old'), { timeout: 20000 });
  assert.equal(await page.getAttribute(legend('temperature', 'probe-old'), 'data-value'), '11.5');
  const before = await page.evaluate(() => window.edgedSensors.points);

  // Readings published now are plotted as they arrive, one point each.
  const values = [20.25, 23.5, 21.75];
  for (const v of values) {
    publish('sensors/probe-new/telemetry', { temperature: v, humidity: v * 2 });
    await sleep(300);
  }
  await until('the live readings plotted', async () =>
    (await page.getAttribute(legend('temperature', 'probe-new'), 'data-value').catch(() => null)) === '21.75');
  const path = await page.getAttribute(
    'figure[data-field="temperature"] path[data-sensor="probe-new"]', 'd');
  assert.equal((path.match(/[ML]/g) || []).length, 3, `three points on the line: ${path}`);
  assert.equal(await page.getAttribute(legend('humidity', 'probe-new'), 'data-value'), '43.5');
  const after = await page.evaluate(() => window.edgedSensors.points);
  assert.equal(after - before, 6, 'two fields of three readings');

  // Broker status and rule matches, from /v1/mqtt.
  await until('the broker table', async () =>
    (await page.textContent('#brokers tbody')).includes('connected'));
  assert.match(await page.textContent('#brokers tbody'), new RegExp(`127\\.0\\.0\\.1:${brokerPort}`));
  await until('the rule matches', async () =>
    (await page.textContent('#rules tbody tr td:nth-child(1)')) === 'watch-probe' &&
    (await page.textContent('#rules tbody tr td:nth-child(3)')) === '3', 15000);
  assert.deepEqual(errors, []);
  await page.close();
});
