// Starts the real edged on a free loopback port with its own data directory.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, writeFileSync, rmSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// @predicate's first true value, polled every 100 ms; fails the test after
// @timeout ms.
export async function until(what, predicate, timeout = 20000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// @extraConfig: top-level YAML; @gatewayConfig: more keys under gateway:,
// each line indented by two spaces.
export async function startEdged(extraConfig = '', gatewayConfig = '') {
  const dir = mkdtempSync(join(tmpdir(), 'edged-node-'));
  const port = await freePort();
  const config = join(dir, 'edged.yaml');
  writeFileSync(config, `data_dir: ${join(dir, 'data')}\ngateway:\n  listen: 127.0.0.1:${port}\n` +
                        `  access_log: false\n${gatewayConfig}${extraConfig}`);
  const log = openSync(join(dir, 'edged.log'), 'w');
  const proc = spawn(process.env.EDGED ?? '../../build/edge/edged', ['--config', config],
                     { stdio: ['ignore', 'ignore', log] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    // On a connection of its own, which ends with the answer: tests that
    // count the daemon's connections find none left by the start.
    const status = await new Promise((resolve) => {
      http.get(`${url}/healthz`, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      }).on('error', () => resolve(0));
    });
    if (status === 200 || status === 401) break; // 401: up, with authentication on
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url, port, proc, dir,
    async stop() {
      const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGTERM');
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
