// @aws-sdk/client-kinesis against edged: many concurrent callers write a few
// hundred thousand records; every shard is read back and every record must
// be there exactly once, byte for byte. Once with the client as it comes
// (its default handler speaks HTTP/2 with prior knowledge on http://), once
// with NodeHttpHandler (HTTP/1.1), as kinesalite's users configure it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { createHash } from 'node:crypto';
import {
  KinesisClient, CreateStreamCommand, PutRecordsCommand, ListShardsCommand,
  GetShardIteratorCommand, GetRecordsCommand, DescribeStreamSummaryCommand,
} from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startEdged } from './edged.mjs';

const RECORDS = Number(process.env.SDK_RECORDS ?? 300000);
const CALLERS = Number(process.env.SDK_CALLERS ?? 8);
const BATCH = 500;

// Record i: "i:" then 20 to 400 bytes derived from i, so that content is checkable.
function recordData(i) {
  const head = Buffer.from(`${i}:`);
  const length = 20 + (i * 7919) % 381;
  const body = Buffer.alloc(length);
  let seed = createHash('sha256').update(String(i)).digest();
  for (let off = 0; off < length; off += seed.length) {
    seed.copy(body, off, 0, Math.min(seed.length, length - off));
    seed = createHash('sha256').update(seed).digest();
  }
  return Buffer.concat([head, body]);
}

function client(url, http1) {
  return new KinesisClient({
    endpoint: url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'edged', secretAccessKey: 'edged' },
    ...(http1 ? { requestHandler: new NodeHttpHandler({
      httpAgent: new Agent({ keepAlive: true, maxSockets: 32 }) }) } : {}),
  });
}

for (const http1 of [false, true]) {
test(`${RECORDS} records from ${CALLERS} callers arrive exactly once ` +
     `(${http1 ? 'HTTP/1.1' : 'the default client, HTTP/2'})`, { timeout: 600000 }, async () => {
  const edged = await startEdged('streams:\n  - name: sdk\n    shards: 4\n    durability: batch\n    batch_ms: 5ms\n');
  try {
    const kinesis = client(edged.url, http1);
    const summary = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: 'sdk' }));
    assert.equal(summary.StreamDescriptionSummary.OpenShardCount, 4);

    let next = 0;
    const started = Date.now();
    async function caller() {
      while (next < RECORDS) {
        const first = next;
        next = Math.min(RECORDS, next + BATCH);
        let pending = [];
        for (let i = first; i < next; i++) pending.push(i);
        // Failed records (throttling) are sent again, as the SDK's users do.
        while (pending.length) {
          const out = await kinesis.send(new PutRecordsCommand({
            StreamName: 'sdk',
            Records: pending.map((i) => ({ Data: recordData(i), PartitionKey: `pk-${i % 997}` })),
          }));
          pending = pending.filter((_, k) => out.Records[k].ErrorCode);
        }
      }
    }
    await Promise.all(Array.from({ length: CALLERS }, caller));
    const seconds = (Date.now() - started) / 1000;
    console.log(`put ${RECORDS} records in ${seconds.toFixed(1)} s (${Math.round(RECORDS / seconds)}/s)`);

    const seen = new Uint8Array(RECORDS);
    let read = 0;
    const { Shards } = await kinesis.send(new ListShardsCommand({ StreamName: 'sdk' }));
    assert.equal(Shards.length, 4);
    for (const shard of Shards) {
      let { ShardIterator } = await kinesis.send(new GetShardIteratorCommand({
        StreamName: 'sdk', ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }));
      let last = -1n;
      for (;;) {
        const out = await kinesis.send(new GetRecordsCommand({ ShardIterator, Limit: 10000 }));
        for (const r of out.Records) {
          const seq = BigInt(r.SequenceNumber);
          assert.ok(seq > last, 'sequence numbers increase within a shard');
          last = seq;
          const data = Buffer.from(r.Data);
          const i = Number(data.toString('latin1', 0, data.indexOf(0x3a)));
          assert.ok(i >= 0 && i < RECORDS, `record index ${i}`);
          assert.equal(seen[i], 0, `record ${i} arrived twice`);
          assert.ok(data.equals(recordData(i)), `record ${i} changed`);
          assert.equal(r.PartitionKey, `pk-${i % 997}`);
          seen[i] = 1;
          read++;
        }
        ShardIterator = out.NextShardIterator;
        if (out.Records.length === 0 && out.MillisBehindLatest === 0) break;
      }
    }
    assert.equal(read, RECORDS, 'every record arrived');
    kinesis.destroy();
  } finally {
    assert.equal(await edged.stop(), 0);
  }
});
}
