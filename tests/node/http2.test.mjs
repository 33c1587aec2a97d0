// The gateway over cleartext HTTP/2 (prior knowledge), with node's own
// http2 client: many streams on one connection, errors and limits as over
// HTTP/1.1, a preface that arrives in pieces, and a client that breaks the
// protocol, none of which disturbs anyone else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { startEdged } from './edged.mjs';

const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

function request(session, headers, body) {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    const chunks = [];
    let head;
    req.on('response', (h) => { head = h; });
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve({ status: head[':status'], headers: head, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    req.end(body);
  });
}

// One request on a connection of its own ("Connection: close"): what is
// counted is then only what other clients hold open.
function getOnce(url) {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });
}

async function connections(url) {
  const { body } = await getOnce(`${url}/metrics`);
  return Number(/^edged_http_connections (\d+)/m.exec(body)[1]);
}

test('HTTP/2 with prior knowledge', { timeout: 60000 }, async () => {
  const edged = await startEdged('streams:\n  - name: h2\n    shards: 2\n', '  max_body_bytes: 64KiB\n');
  try {
    const session = http2.connect(edged.url);

    // Fifty requests at once on one connection.
    const answers = await Promise.all(Array.from({ length: 50 }, () =>
      request(session, { ':path': '/healthz' })));
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(a.headers['content-type'], 'application/json');
      assert.equal(JSON.parse(a.body).status, 'ok');
      assert.equal(a.headers.connection, undefined, 'no connection-specific headers');
    }

    // Errors in edged's own shape; HEAD has the length and no body.
    const missing = await request(session, { ':path': '/nope' });
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.body).error.code, 'NotFound');
    const head = await request(session, { ':method': 'HEAD', ':path': '/healthz' });
    assert.equal(head.status, 200);
    assert.ok(Number(head.headers['content-length']) > 0);
    assert.equal(head.body.length, 0);

    // A body over the limit is refused with 413, and the connection goes on.
    const big = await request(session, { ':method': 'POST', ':path': '/v1/streams',
                                         'content-type': 'application/json' },
                              Buffer.alloc(200 * 1024, 0x20));
    assert.equal(big.status, 413);
    const after = await request(session, { ':path': '/healthz' });
    assert.equal(after.status, 200);

    // The Kinesis API, as an SDK sends it.
    const put = await request(session, {
      ':method': 'POST', ':path': '/', 'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'Kinesis_20131202.PutRecord' },
      JSON.stringify({ StreamName: 'h2', Data: Buffer.from('over h2').toString('base64'), PartitionKey: 'k' }));
    assert.equal(put.status, 200, put.body.toString());
    assert.match(JSON.parse(put.body).SequenceNumber, /^\d+$/);
    const bad = await request(session, {
      ':method': 'POST', ':path': '/', 'x-amz-target': 'Kinesis_20131202.PutRecord' }, '{');
    assert.equal(bad.status, 400);
    assert.equal(JSON.parse(bad.body).__type, 'SerializationException');
    session.close();
  } finally {
    assert.equal(await edged.stop(), 0);
  }
});

test('a preface in pieces is still HTTP/2; a broken peer is cut off alone', { timeout: 60000 }, async () => {
  const edged = await startEdged();
  try {
    // The preface in three pieces, then an empty SETTINGS frame: the server
    // must answer with its own SETTINGS (frame type 4).
    const settings = await new Promise((resolve, reject) => {
      const sock = net.connect(edged.port, '127.0.0.1');
      sock.on('error', reject);
      sock.once('data', (d) => { sock.destroy(); resolve(d); });
      sock.write(PREFACE.slice(0, 3));
      setTimeout(() => sock.write(PREFACE.slice(3, 10)), 50);
      setTimeout(() => sock.write(Buffer.concat([Buffer.from(PREFACE.slice(10)),
                                                 Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])), 100);
    });
    assert.equal(settings[3], 4, 'a SETTINGS frame');

    // Garbage after the preface: the server ends that connection (GOAWAY,
    // then close) and serves everyone else.
    const closed = await new Promise((resolve, reject) => {
      const sock = net.connect(edged.port, '127.0.0.1');
      const got = [];
      sock.on('data', (d) => got.push(d));
      sock.on('close', () => resolve(Buffer.concat(got)));
      sock.on('error', reject);
      sock.write(PREFACE + 'this is not a frame at all, not even close to one');
    });
    const types = [];
    for (let at = 0; at + 9 <= closed.length; at += 9 + closed.readUIntBE(at, 3))
      types.push(closed[at + 3]);
    assert.ok(types.includes(7), `a GOAWAY frame was sent (frames: ${types})`);
    assert.equal((await getOnce(`${edged.url}/healthz`)).status, 200);

    // Every connection is counted and let go of.
    for (let i = 0; i < 50 && await connections(edged.url) > 1; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.ok(await connections(edged.url) <= 1, 'only the /metrics request itself is open');
  } finally {
    assert.equal(await edged.stop(), 0);
  }
});

test('clients that vanish mid-request leave nothing behind', { timeout: 60000 }, async () => {
  const edged = await startEdged('streams:\n  - name: gone\n    shards: 2\n');
  try {
    const body = JSON.stringify({ StreamName: 'gone', Records: Array.from({ length: 500 }, (_, i) =>
      ({ Data: Buffer.alloc(1000, i).toString('base64'), PartitionKey: `k${i}` })) });
    for (let i = 0; i < 100; i++) {
      const session = http2.connect(edged.url);
      session.on('error', () => {});
      const req = session.request({ ':method': 'POST', ':path': '/',
                                    'x-amz-target': 'Kinesis_20131202.PutRecords' });
      req.on('error', () => {});
      // Half the body, the whole body, or the body and a moment for the
      // answer to be under way: then the client is gone.
      if (i % 3 === 0) req.write(body.slice(0, body.length / 2));
      else req.end(body);
      if (i % 3 === 2) await new Promise((r) => setTimeout(r, 2));
      session.destroy();
    }
    for (let i = 0; i < 100 && await connections(edged.url) > 1; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.ok(await connections(edged.url) <= 1, 'no connection left behind');
    // Whatever was accepted is whole and readable; the server answers as before.
    const session = http2.connect(edged.url);
    const summary = await request(session, { ':method': 'POST', ':path': '/',
      'x-amz-target': 'Kinesis_20131202.DescribeStreamSummary' }, JSON.stringify({ StreamName: 'gone' }));
    assert.equal(summary.status, 200);
    session.close();
  } finally {
    assert.equal(await edged.stop(), 0);
  }
});
