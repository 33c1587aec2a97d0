// Whether more client processes move more records into edged on this
// machine: 100-byte PutRecords (batches of 500, durability none, 4 shards)
// through @aws-sdk/client-kinesis over HTTP/1.1, from one process of 4
// callers, then from two processes of 2 callers side by side, each process
// warmed up first. If the second is no faster, the cores are full and the
// client, not the server, sets the records/s of kinesis-sdk.mjs.
//
//   tests/node/node_modules/.bin/node bench/streams/put-processes.mjs [RUNS] [RECORDS]
//
// (A process started with a URL as its first argument is one of the clients.)
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync } from 'node:fs';
import { Agent } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'tests/node/package.json'));
const WARMUP = 60000;

async function client(url, records, callers, tag) {
  const { KinesisClient, PutRecordsCommand } = require('@aws-sdk/client-kinesis');
  const { NodeHttpHandler } = require('@smithy/node-http-handler');
  const k = new KinesisClient({
    endpoint: url, region: 'us-east-1', maxAttempts: 10,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ keepAlive: true, maxSockets: 16 }) }),
  });
  const payload = Buffer.alloc(100, 0x61);
  const put = async (total) => {
    let sent = 0;
    await Promise.all(Array.from({ length: callers }, async () => {
      while (sent < total) {
        const n = Math.min(500, total - sent);
        const base = sent;
        sent += n;
        let pending = Array.from({ length: n }, (_, i) => i);
        while (pending.length) {
          const out = await k.send(new PutRecordsCommand({ StreamName: 'bench',
            Records: pending.map((i) => ({ Data: payload, PartitionKey: `${tag}${base + i}` })) }));
          pending = pending.filter((_, j) => out.Records[j].ErrorCode);
        }
      }
    }));
  };
  await put(WARMUP);
  // Both processes start timing once warm: each waits for a line on stdin.
  process.stdout.write('warm\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const t0 = performance.now();
  await put(records);
  process.stdout.write(`${JSON.stringify({ seconds: (performance.now() - t0) / 1000 })}\n`);
  k.destroy();
  process.exit(0);
}

if (process.argv[2]?.startsWith('http')) {
  const [url, records, callers, tag] = process.argv.slice(2);
  await client(url, Number(records), Number(callers), tag);
}

const { freePort } = await import(join(root, 'tests/node/edged.mjs'));

async function startEdged() {
  const dir = mkdtempSync(join(tmpdir(), 'edged-bench-'));
  const port = await freePort();
  const config = join(dir, 'edged.yaml');
  writeFileSync(config, `data_dir: ${join(dir, 'data')}\nlog:\n  level: warning\ngateway:\n` +
    `  listen: 127.0.0.1:${port}\n  access_log: false\nstreams:\n  - name: bench\n` +
    '    shards: 4\n    durability: none\n');
  const proc = spawn(join(root, 'build/edge/edged'), ['--config', config],
                     { stdio: ['ignore', 'ignore', openSync(join(dir, 'log'), 'w')] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try { await fetch(`${url}/healthz`); break; } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { url, stop: () => { proc.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); } };
}

// Records/s of @processes clients of @callers each, @records each, timed together.
async function round(url, processes, callers, records) {
  const children = Array.from({ length: processes }, (_, i) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), url, String(records),
                                           String(callers), `p${i}-`],
                        { stdio: ['pipe', 'pipe', 'ignore'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    const lines = [];
    let waiting = null, buffer = '';
    child.stdout.on('data', (chunk) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        lines.push(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        waiting?.();
      }
    });
    child.next = () => new Promise((resolve, reject) => {
      const check = () => { if (lines.length) { waiting = null; resolve(lines.shift()); } };
      waiting = check;
      child.once('exit', (code) => { if (!lines.length) reject(new Error(`client exited ${code}`)); });
      check();
    });
    return child;
  });
  for (const child of children) await child.next(); // warm
  const t0 = performance.now();
  for (const child of children) child.stdin.write('go\n');
  const results = [];
  for (const child of children) results.push(JSON.parse(await child.next()));
  const wall = (performance.now() - t0) / 1000;
  return (processes * records) / wall;
}

const RUNS = Number(process.argv[2] ?? 3), RECORDS = Number(process.argv[3] ?? 400000);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const one = [], two = [];
for (let run = 0; run < RUNS; run++) {
  for (const [processes, callers, out] of [[1, 4, one], [2, 2, two]]) {
    const edged = await startEdged();
    try {
      const rate = await round(edged.url, processes, callers, RECORDS / processes);
      out.push(rate);
      console.error(`run ${run + 1}: ${processes} process(es) of ${callers} callers: ` +
                    `${Math.round(rate)} records/s`);
    } finally {
      edged.stop();
    }
  }
}
console.log('| clients | records/s (median) | runs |');
console.log('|---|---|---|');
console.log(`| 1 process, 4 callers | ${Math.round(median(one)).toLocaleString('en')} | ${one.map(Math.round).join(', ')} |`);
console.log(`| 2 processes, 2 callers each | ${Math.round(median(two)).toLocaleString('en')} | ${two.map(Math.round).join(', ')} |`);
