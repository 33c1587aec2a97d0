// A Kinesis endpoint that keeps nothing: the client's ceiling. It answers
// PutRecords with as many successes as the request has records (counted
// from the body, not parsed), and reads with ready-made answers of the
// record size asked for, so that what bench/streams/kinesis-sdk.mjs
// measures against it is what @aws-sdk/client-kinesis itself can do on this
// machine, whatever any server does.
//
//   node null-kinesis.mjs PORT RECORD_BYTES RECORDS SHARDS
import { createServer } from 'node:http';

const [port, recordBytes, records, shards] = process.argv.slice(2).map(Number);
const perShard = Math.ceil(records / shards);
const data = Buffer.alloc(recordBytes, 0x61).toString('base64');
const now = Date.now() / 1000;

const cache = new Map();
function cached(key, make) {
  if (!cache.has(key)) cache.set(key, Buffer.from(JSON.stringify(make())));
  return cache.get(key);
}

const putAnswer = (n) => cached(`put ${n}`, () => ({
  FailedRecordCount: 0,
  Records: Array.from({ length: n }, (_, i) => ({ ShardId: 'shardId-000000000000',
    SequenceNumber: `4960000000000000000000000000000000000000000000000${i}` })),
}));

function getAnswer(shard, at, limit) {
  const n = Math.max(0, Math.min(limit, perShard - at));
  const next = `it-${shard}-${at + n}`;
  const body = cached(`get ${n}`, () => ({
    Records: Array.from({ length: n }, (_, i) => ({ Data: data, PartitionKey: `k${i}`,
      SequenceNumber: `4960000000000000000000000000000000000000000000000${i}`,
      ApproximateArrivalTimestamp: now })),
    NextShardIterator: 'NEXT', MillisBehindLatest: 0,
  }));
  return Buffer.from(body.toString().replace('"NEXT"', JSON.stringify(next)));
}

createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const op = String(req.headers['x-amz-target'] ?? '').split('.')[1];
    let answer;
    if (op === 'PutRecords') {
      let n = 0;
      for (let at = body.indexOf('"PartitionKey"'); at >= 0; at = body.indexOf('"PartitionKey"', at + 1)) n++;
      answer = putAnswer(n);
    } else if (op === 'ListShards') {
      answer = Buffer.from(JSON.stringify({ Shards: Array.from({ length: shards }, (_, i) => ({
        ShardId: `shardId-${String(i).padStart(12, '0')}`,
        HashKeyRange: { StartingHashKey: '0', EndingHashKey: '1' },
        SequenceNumberRange: { StartingSequenceNumber: '0' } })) }));
    } else if (op === 'GetShardIterator') {
      answer = Buffer.from(JSON.stringify({ ShardIterator: `it-${JSON.parse(body).ShardId}-0` }));
    } else if (op === 'GetRecords') {
      const { ShardIterator, Limit } = JSON.parse(body);
      const m = /^it-(.*)-(\d+)$/.exec(ShardIterator);
      answer = getAnswer(m[1], Number(m[2]), Limit ?? 10000);
    } else {
      answer = Buffer.from('{}');
    }
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'content-length': answer.length });
    res.end(answer);
  });
}).listen(port, '127.0.0.1', () => console.log('listening'));
