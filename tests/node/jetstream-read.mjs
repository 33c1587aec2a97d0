// Reads every message of a JetStream stream with the official NATS client
// (nats.js) and prints one JSON line per message: its stream sequence,
// subject, headers and data (base64). Used by the forwarding tests.
//
//   node jetstream-read.mjs SERVERS STREAM [CA_FILE USER PASSWORD]
//
// A cluster whose node was just restarted may take a while to answer
// JetStream API requests (the restarted node catches up, a leader may be
// elected again): each request is tried again for up to a minute.
import { connect } from "nats";

const [servers, stream, caFile, user, pass] = process.argv.slice(2);

async function retrying(what, f) {
  const deadline = Date.now() + 60000;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: ${e.message}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

const nc = await connect({ servers: servers.split(","), timeout: 5000,
                          ...(caFile ? { tls: { caFile }, user, pass } : {}) });
const jsm = await retrying("JetStream manager", () => nc.jetstreamManager({ timeout: 10000 }));
const info = await retrying("stream info", () => jsm.streams.info(stream));
const total = info.state.messages;
const js = nc.jetstream({ timeout: 10000 });
// An ordered consumer, from the start.
const consumer = await retrying("consumer", () => js.consumers.get(stream));
const out = [];
if (total > 0) {
  const messages = await retrying("consume", () => consumer.consume());
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
