// Reads every message of a JetStream stream with the official NATS client
// (nats.js) and prints one JSON line per message: its stream sequence,
// subject, headers and data (base64). Used by the forwarding tests.
//
//   node jetstream-read.mjs SERVERS STREAM
import { connect } from "nats";

const [servers, stream] = process.argv.slice(2);
const nc = await connect({ servers: servers.split(","), timeout: 5000 });
const jsm = await nc.jetstreamManager();
const info = await jsm.streams.info(stream);
const total = info.state.messages;
const js = nc.jetstream();
const consumer = await js.consumers.get(stream); // an ordered consumer, from the start
const messages = await consumer.consume();
const out = [];
if (total > 0) {
  for await (const m of messages) {
    const headers = {};
    for (const [k, v] of m.headers ?? []) headers[k] = v[0];
    out.push(JSON.stringify({ seq: m.seq, subject: m.subject, headers,
                              data: Buffer.from(m.data).toString("base64") }));
    if (m.info.pending === 0 && out.length >= total) break;
  }
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
await nc.close();
