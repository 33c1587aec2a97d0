// SubscribeToShard as the AWS SDK for JavaScript speaks it (HTTP/2, AWS
// event streams), with its default client: records arrive as they are put,
// in order, byte for byte; a subscription resumes from its
// ContinuationSequenceNumber; a consumer's second subscription to a shard
// is refused within 5 s of the first and takes over after;
// a closed shard ends its subscription with its ChildShards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KinesisClient, RegisterStreamConsumerCommand, SubscribeToShardCommand, PutRecordsCommand,
  SplitShardCommand, DescribeStreamCommand,
} from '@aws-sdk/client-kinesis';
import { Agent } from 'node:http';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { startEdged } from './edged.mjs';

const SHARD0_KEY = '0'; // ExplicitHashKey in shard 0 of 2
const client = (url, http1) => new KinesisClient({ endpoint: url, region: 'us-east-1',
  credentials: { accessKeyId: 'edged', secretAccessKey: 'edged' },
  ...(http1 ? { requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ keepAlive: true }) }) } : {}) });

async function put(kinesis, from, count) {
  const records = Array.from({ length: count }, (_, i) => ({
    Data: Buffer.from(`record ${from + i} ` + 'x'.repeat((from + i) % 50)),
    PartitionKey: `k${from + i}`, ExplicitHashKey: SHARD0_KEY }));
  for (let at = 0; at < records.length; at += 500) {
    const out = await kinesis.send(new PutRecordsCommand({ StreamName: 'sub', Records: records.slice(at, at + 500) }));
    assert.equal(out.FailedRecordCount, 0);
  }
}

// Reads events until @want records have arrived; returns them and the last event.
async function collect(events, want) {
  const got = [];
  let last;
  for await (const event of events) {
    assert.ok(event.SubscribeToShardEvent, JSON.stringify(event));
    last = event.SubscribeToShardEvent;
    got.push(...last.Records);
    if (got.length >= want) break;
  }
  return { got, last };
}

for (const http1 of [false, true]) {
test(`SubscribeToShard with ${http1 ? 'an HTTP/1.1 client (chunked)' : 'the default client (HTTP/2)'}`,
     { timeout: 120000 }, async () => {
  const edged = await startEdged('streams:\n  - name: sub\n    shards: 2\n    durability: none\n');
  const kinesis = client(edged.url, http1);
  try {
    const desc = await kinesis.send(new DescribeStreamCommand({ StreamName: 'sub' }));
    const { Consumer } = await kinesis.send(new RegisterStreamConsumerCommand({
      StreamARN: desc.StreamDescription.StreamARN, ConsumerName: 'reader' }));

    await put(kinesis, 0, 300); // before the subscription
    const leave = new AbortController();
    const sub = await kinesis.send(new SubscribeToShardCommand({ ConsumerARN: Consumer.ConsumerARN,
      ShardId: 'shardId-000000000000', StartingPosition: { Type: 'TRIM_HORIZON' } }),
      { abortSignal: leave.signal });
    const events = sub.EventStream[Symbol.asyncIterator]();
    const writer = put(kinesis, 300, 1700); // while subscribed
    const { got, last } = await collect({ [Symbol.asyncIterator]: () => events }, 2000);
    await writer;
    assert.equal(got.length, 2000);
    got.forEach((r, i) => {
      assert.equal(Buffer.from(r.Data).toString(), `record ${i} ` + 'x'.repeat(i % 50));
      assert.equal(r.PartitionKey, `k${i}`);
      if (i > 0) assert.ok(BigInt(r.SequenceNumber) > BigInt(got[i - 1].SequenceNumber));
    });
    assert.equal(last.ContinuationSequenceNumber, got[1999].SequenceNumber);
    assert.equal(typeof last.MillisBehindLatest, 'number');

    // One subscription per consumer and shard: a second within 5 s is
    // refused, later it takes over (as Kinesis does).
    await assert.rejects(kinesis.send(new SubscribeToShardCommand({ ConsumerARN: Consumer.ConsumerARN,
      ShardId: 'shardId-000000000000', StartingPosition: { Type: 'LATEST' } })),
      (e) => e.name === 'ResourceInUseException');
    leave.abort();
    await events.return().catch(() => {});
    await new Promise((r) => setTimeout(r, 5000));

    // Resume after the last record seen: only the new ones come.
    const again = await kinesis.send(new SubscribeToShardCommand({ ConsumerARN: Consumer.ConsumerARN,
      ShardId: 'shardId-000000000000',
      StartingPosition: { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: last.ContinuationSequenceNumber } }));
    await put(kinesis, 2000, 10);
    const resumed = await collect(again.EventStream, 10);
    assert.deepEqual(resumed.got.map((r) => Buffer.from(r.Data).toString().split(' ')[1]),
                     Array.from({ length: 10 }, (_, i) => String(2000 + i)));

    // Unknown consumers and shards are refused before any event.
    await assert.rejects(kinesis.send(new SubscribeToShardCommand({
      ConsumerARN: Consumer.ConsumerARN.replace('reader', 'nobody'), ShardId: 'shardId-000000000000',
      StartingPosition: { Type: 'LATEST' } })), (e) => e.name === 'ResourceNotFoundException');
    await assert.rejects(kinesis.send(new SubscribeToShardCommand({ ConsumerARN: Consumer.ConsumerARN,
      ShardId: 'shardId-000000000009', StartingPosition: { Type: 'LATEST' } })),
      (e) => e.name === 'ResourceNotFoundException');

    // A shard closed by a split: its subscription ends with the children.
    const closing = await kinesis.send(new SubscribeToShardCommand({ ConsumerARN: Consumer.ConsumerARN,
      ShardId: 'shardId-000000000001', StartingPosition: { Type: 'TRIM_HORIZON' } }));
    await kinesis.send(new SplitShardCommand({ StreamName: 'sub', ShardToSplit: 'shardId-000000000001',
      NewStartingHashKey: (2n ** 127n + 2n ** 126n).toString() }));
    let children;
    for await (const event of closing.EventStream) {
      if (event.SubscribeToShardEvent.ChildShards?.length) children = event.SubscribeToShardEvent.ChildShards;
    }
    assert.deepEqual(children.map((c) => c.ShardId).sort(), ['shardId-000000000002', 'shardId-000000000003']);
  } finally {
    kinesis.destroy();
    assert.equal(await edged.stop(), 0);
  }
});
}
