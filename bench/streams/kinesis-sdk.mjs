// PutRecords and GetRecords through @aws-sdk/client-kinesis, against edged
// and kinesalite side by side in one run: records/s seen by the client and
// the server's CPU time per record (user + system, every thread's, to the
// nanosecond: the process's CPU-time clock, which python3 reads for us;
// /proc/PID/stat counts in 10 ms ticks, 0.2 µs a record of 1 KiB here).
//
//   cd tests/node && npm ci && cd ../..
//   tests/node/node_modules/.bin/node bench/streams/kinesis-sdk.mjs [RUNS]
//
// The side-by-side rows speak HTTP/1.1 (NodeHttpHandler), the only protocol
// kinesalite speaks; one more row is edged with the client as it comes (its
// default handler: HTTP/2). kinesalite keeps records in memory; edged is
// measured with durability "none" (acknowledged after write(2): the closest
// comparison) and "sync" (acknowledged after fdatasync, its default). The
// last row is the client against an endpoint that keeps nothing
// (null-kinesis.mjs): the most records/s this client can move here.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, openSync } from 'node:fs';
import { Agent } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(root, 'tests/node/package.json'));
const { KinesisClient, CreateStreamCommand, PutRecordsCommand, ListShardsCommand,
        GetShardIteratorCommand, GetRecordsCommand, DescribeStreamCommand } =
  require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = require('@smithy/node-http-handler');
const { freePort } = await import(join(root, 'tests/node/edged.mjs'));

const RUNS = Number(process.argv[2] ?? 3);
const CALLERS = 4, SHARDS = 4, BATCH = 500;

// The CPU time of process @pid so far, in seconds: clock_gettime on its
// CPU-time clock (clock_getcpuclockid's value, MAKE_PROCESS_CPUCLOCK in
// Linux: ~pid << 3 | CPUCLOCK_SCHED), which counts threads that have
// ended too. Read outside the timed stretches.
function cpuSeconds(pid) {
  const ns = execFileSync('python3', ['-c',
    'import sys, time; print(time.clock_gettime_ns((~int(sys.argv[1]) << 3) | 2))', String(pid)]);
  return Number(ns) / 1e9;
}

async function waitUp(url) {
  for (let i = 0; i < 200; i++) {
    try { await fetch(url); return; } catch { await new Promise((r) => setTimeout(r, 50)); }
  }
  throw new Error(`${url} did not come up`);
}

async function startEdged(durability) {
  const dir = mkdtempSync(join(tmpdir(), 'edged-bench-'));
  const port = await freePort();
  const config = join(dir, 'edged.yaml');
  writeFileSync(config, `data_dir: ${join(dir, 'data')}\nlog:\n  level: warning\ngateway:\n` +
    `  listen: 127.0.0.1:${port}\n  access_log: false\nstreams:\n  - name: bench\n` +
    `    shards: ${SHARDS}\n    durability: ${durability}\n    max_record_bytes: 1MiB\n`);
  const proc = spawn(join(root, 'build/edge/edged'), ['--config', config],
                     { stdio: ['ignore', 'ignore', openSync(join(dir, 'log'), 'w')] });
  const url = `http://127.0.0.1:${port}`;
  await waitUp(`${url}/healthz`);
  return { name: `edged (${durability})`, http1: true, url, proc, stop: () => { proc.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); } };
}

async function startKinesalite() {
  const port = await freePort();
  const proc = spawn(process.execPath, [require.resolve('kinesalite/cli.js'), '--port', String(port),
    '--createStreamMs', '0', '--deleteStreamMs', '0', '--updateStreamMs', '0', '--shardLimit', '100'],
    { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  const k = client(url, true);
  await k.send(new CreateStreamCommand({ StreamName: 'bench', ShardCount: SHARDS }));
  for (;;) {
    const d = await k.send(new DescribeStreamCommand({ StreamName: 'bench' }));
    if (d.StreamDescription.StreamStatus === 'ACTIVE') break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return { name: 'kinesalite', http1: true, url, proc, stop: () => proc.kill('SIGKILL') };
}

// The client's ceiling: an endpoint that keeps nothing (null-kinesis.mjs).
async function startNull(recordBytes, records) {
  const port = await freePort();
  const proc = spawn(process.execPath, [join(root, 'bench/streams/null-kinesis.mjs'), String(port),
    String(recordBytes), String(records), String(SHARDS)], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  return { name: 'null server (the client alone)', http1: true, url, proc, stop: () => proc.kill('SIGKILL') };
}

function client(url, http1) {
  return new KinesisClient({
    endpoint: url, region: 'us-east-1', maxAttempts: 10,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    ...(http1 ? { requestHandler: new NodeHttpHandler({
      httpAgent: new Agent({ keepAlive: true, maxSockets: 16 }) }) } : {}),
  });
}

async function measure(server, recordBytes, records) {
  const k = client(server.url, server.http1);
  const payload = Buffer.alloc(recordBytes, 0x61);
  let sent = 0;
  const cpu0 = cpuSeconds(server.proc.pid), t0 = performance.now(), client0 = process.cpuUsage();
  await Promise.all(Array.from({ length: CALLERS }, async () => {
    while (sent < records) {
      const n = Math.min(BATCH, records - sent);
      sent += n;
      let pending = Array.from({ length: n }, (_, i) => i);
      while (pending.length) {
        const out = await k.send(new PutRecordsCommand({ StreamName: 'bench',
          Records: pending.map((i) => ({ Data: payload, PartitionKey: `k${sent + i}` })) }));
        pending = pending.filter((_, j) => out.Records[j].ErrorCode);
      }
    }
  }));
  const putSeconds = (performance.now() - t0) / 1000, putCpu = cpuSeconds(server.proc.pid) - cpu0;
  const usage = process.cpuUsage(client0), putClientCpu = (usage.user + usage.system) / 1e6;

  const cpu1 = cpuSeconds(server.proc.pid), t1 = performance.now();
  let read = 0;
  const { Shards } = await k.send(new ListShardsCommand({ StreamName: 'bench' }));
  await Promise.all(Shards.map(async (shard) => {
    let { ShardIterator } = await k.send(new GetShardIteratorCommand({ StreamName: 'bench',
      ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }));
    for (;;) {
      const out = await k.send(new GetRecordsCommand({ ShardIterator, Limit: 10000 }));
      read += out.Records.length;
      ShardIterator = out.NextShardIterator;
      if (out.Records.length === 0) break;
    }
  }));
  const getSeconds = (performance.now() - t1) / 1000, getCpu = cpuSeconds(server.proc.pid) - cpu1;
  k.destroy();
  if (read < records) throw new Error(`${server.name}: read ${read} of ${records}`);
  return { put: records / putSeconds, putCpuUs: putCpu / records * 1e6,
           putClientCpuUs: putClientCpu / records * 1e6,
           get: read / getSeconds, getCpuUs: getCpu / read * 1e6 };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {};
for (let run = 0; run < RUNS; run++) {
  for (const [recordBytes, records] of [[100, 100000], [1024, 50000]]) {
    const h2 = async () => ({ ...(await startEdged('none')), name: 'edged (none, HTTP/2)', http1: false });
    for (const start of [() => startKinesalite(), () => startEdged('none'), () => startEdged('sync'), h2,
                         () => startNull(recordBytes, records)]) {
      const server = await start();
      try {
        const r = await measure(server, recordBytes, records);
        const key = `${server.name} ${recordBytes} B`;
        (results[key] ??= []).push(r);
        console.error(`run ${run + 1}: ${key}: put ${Math.round(r.put)}/s (${r.putCpuUs.toFixed(1)} µs CPU), ` +
                      `get ${Math.round(r.get)}/s (${r.getCpuUs.toFixed(1)} µs CPU), ` +
                      `client ${r.putClientCpuUs.toFixed(1)} µs CPU per record put`);
      } finally {
        server.stop();
      }
    }
  }
}
console.log('| server | record | PutRecords records/s | server CPU µs/record (put) | client CPU µs/record (put) | GetRecords records/s | server CPU µs/record (get) |');
console.log('|---|---|---|---|---|---|---|');
for (const [key, rs] of Object.entries(results)) {
  const [name, bytes] = key.split(/ (?=\d+ B$)/);
  console.log(`| ${name} | ${bytes} | ${Math.round(median(rs.map((r) => r.put))).toLocaleString('en')} | ` +
              `${median(rs.map((r) => r.putCpuUs)).toFixed(1)} | ${median(rs.map((r) => r.putClientCpuUs)).toFixed(1)} | ${Math.round(median(rs.map((r) => r.get))).toLocaleString('en')} | ` +
              `${median(rs.map((r) => r.getCpuUs)).toFixed(1)} |`);
}
// The ratios, from the unrounded medians: records/s as a multiple of
// kinesalite's, server CPU per record as a fraction of it.
const med = (key, field) => median(results[key].map((r) => r[field]));
console.log('\n| record | server | PutRecords records/s | server CPU per record (put) | GetRecords records/s | server CPU per record (get) |');
console.log('|---|---|---|---|---|---|');
for (const bytes of [100, 1024]) {
  const k = `kinesalite ${bytes} B`;
  for (const name of ['edged (none)', 'edged (sync)', 'null server (the client alone)']) {
    const e = `${name} ${bytes} B`;
    const cpu = (field) => (name.startsWith('null') ? '' : `1/${(med(k, field) / med(e, field)).toFixed(1)}`);
    console.log(`| ${bytes} B | ${name} | ${(med(e, 'put') / med(k, 'put')).toFixed(1)}× | ${cpu('putCpuUs')} | ` +
                `${(med(e, 'get') / med(k, 'get')).toFixed(1)}× | ${cpu('getCpuUs')} |`);
  }
}
