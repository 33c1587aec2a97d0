// A real browser on the delivery page: a delivery stream that delivers shows
// what it delivered; one whose S3 server is gone shows its waiting records
// and the error, in red. Chromium is Debian's, driven through playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { freePort, startEdged, until } from './edged.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
let edged, browser, out, gone;

async function putRecords(stream, datas) {
  const r = await fetch(edged.url, {
    method: 'POST',
    headers: { 'X-Amz-Target': 'Kinesis_20131202.PutRecords',
               'Content-Type': 'application/x-amz-json-1.1' },
    body: JSON.stringify({ StreamName: stream, Records: datas.map((d, i) => ({
      PartitionKey: `k${i}`, Data: Buffer.from(d).toString('base64') })) }),
  });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).FailedRecordCount, 0);
}

before(async () => {
  out = mkdtempSync(join(tmpdir(), 'edged-delivery-'));
  gone = await freePort(); // nothing listens there
  edged = await startEdged(`streams:
  - name: readings
  - name: alerts
  - name: summaries
analytics:
  - name: per-second
    stream: readings
    output: summaries
    size: 1s
    sql: "SELECT count(*) AS n FROM records"
delivery_streams:
  - name: archive
    stream: readings
    destination: directory
    directory: ${out}
    buffer_interval: 1s
  - name: offsite
    stream: alerts
    destination: s3
    endpoint: http://127.0.0.1:${gone}
    bucket: alerts
    access_key_id: EDGE
    secret_access_key: secret
    buffer_interval: 1s
forwarders:
  - name: upstream
    stream: alerts
    destination: kinesis
    endpoint: http://127.0.0.1:${gone}
    access_key_id: EDGE
    secret_access_key: secret
`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  assert.equal(await edged.stop(), 0);
  rmSync(out, { recursive: true, force: true });
});

test('the delivery page shows what was delivered and what waits', async () => {
  await putRecords('readings', Array.from({ length: 12 }, (_, i) => `{"n":${i}}`));
  await putRecords('alerts', ['a', 'b', 'c']);
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${edged.url}/delivery`);
  const cells = async (name) => page.$$eval(`tr[data-name="${name}"] td`,
                                            (tds) => tds.map((td) => [td.textContent, td.className]));
  const archive = await until('archive delivered', async () => {
    const row = await cells('archive');
    return row.length && row[6][0].startsWith('12 ') ? row : null;
  });
  assert.equal(archive[2][0], `directory ${out}`);
  assert.equal(archive[3][0], '0 records');
  assert.equal(archive[6][1], 'ok');
  const offsite = await until('offsite failing', async () => {
    const row = await cells('offsite');
    return row.length && row[10][0] ? row : null;
  });
  assert.equal(offsite[3][0], '3 records');
  assert.equal(offsite[3][1], 'bad');
  assert.match(offsite[10][0], /127\.0\.0\.1|connect|refused/i);
  assert.equal(offsite[10][1], 'bad');
  // The forwarder to the same missing server waits too, and says why.
  const upstream = await until('upstream failing', async () => {
    const row = await page.$$eval('#forwarders tr[data-name="upstream"] td',
                                  (tds) => tds.map((td) => [td.textContent, td.className]));
    return row.length && row[10][0] ? row : null;
  });
  assert.equal(upstream[2][0], `kinesis http://127.0.0.1:${gone} alerts`);
  assert.equal(upstream[3][0], '3 records');
  assert.equal(upstream[3][1], 'bad');
  assert.match(upstream[10][0], /3 of 3 records not taken/);
  // The analytics application took the 12 readings and closed a window.
  const perSecond = await until('per-second windows', async () => {
    const row = await page.$$eval('#analytics tr[data-name="per-second"] td',
                                  (tds) => tds.map((td) => [td.textContent, td.className]));
    return row.length && row[5][0] === '12' && Number(row[7][0]) >= 1 ? row : null;
  });
  assert.equal(perSecond[3][0], 'tumbling, 1 s');
  // No video uploads here: the page says how to add one.
  assert.equal(await page.isVisible('#no-uploads'), true);
  assert.equal(perSecond[11][0], '');
  assert.match(await page.textContent('#state'), /2 delivery streams, 1 forwarder, 6 records waiting/);
  assert.deepEqual(errors, []);
});
