// HTTP load: CONCURRENCY clients on keep-alive connections, each sending GET
// URL again as soon as the last answer is in, for SECONDS. Prints
// {"requests", "rps", "p50_ms", "p99_ms", "errors"} as JSON.
//   node load.mjs URL CONCURRENCY SECONDS
import http from 'node:http';

const [url, concurrency = '8', seconds = '5'] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) });
const latencies = [];
let errors = 0;
const end = performance.now() + Number(seconds) * 1000;

function once() {
  return new Promise((resolve) => {
    const start = performance.now();
    const req = http.get(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode === 200) latencies.push(performance.now() - start);
        else errors++;
        resolve();
      });
    });
    req.on('error', () => {
      errors++;
      resolve();
    });
  });
}

async function client() {
  while (performance.now() < end) await once();
}

const started = performance.now();
await Promise.all(Array.from({ length: Number(concurrency) }, client));
const elapsed = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const pick = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : 0);
console.log(JSON.stringify({
  requests: latencies.length,
  rps: latencies.length / elapsed,
  p50_ms: pick(0.5),
  p99_ms: pick(0.99),
  errors,
}));
agent.destroy();
