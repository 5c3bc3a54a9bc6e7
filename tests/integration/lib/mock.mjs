// Starts the mock provider (mock-provider.mjs) as its own process and drives it over HTTP.

import fs from 'node:fs';
import path from 'node:path';
import { IT_DIR, spawnProcess, tempDir, waitFor } from './procs.mjs';

export class MockClient {
  constructor(port) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.baseURL = `${this.url}/v1`; // OpenAI-format base URL
  }

  async call(method, p, body) {
    const r = await fetch(`${this.url}${p}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`mock ${method} ${p}: ${r.status} ${text}`);
    return JSON.parse(text);
  }

  // Recorded provider requests, oldest first; `since` = a seq to start after.
  requests({ since = 0, path: only } = {}) {
    return this.call('GET', `/_mock/requests${since ? `?since=${since}` : ''}`)
      .then((list) => (only ? list.filter((r) => r.path === only) : list));
  }

  // The seq of the last recorded request (0 when none): pass as `since` later.
  async mark() {
    const list = await this.requests();
    return list.length ? list[list.length - 1].seq : 0;
  }

  clearRequests() { return this.call('DELETE', '/_mock/requests'); }
  fault(f) { return this.call('POST', '/_mock/faults', f); }
  faults() { return this.call('GET', '/_mock/faults'); }
  clearFaults() { return this.call('DELETE', '/_mock/faults'); }
  config(c) { return this.call('POST', '/_mock/config', c); }
  reset() { return this.call('POST', '/_mock/reset', {}); }
  stats() { return this.call('GET', '/_mock/stats'); }
}

// Options: keys (array of accepted provider keys; null = any), verbose, extraArgs.
export async function startMock({ keys = null, verbose = false, extraArgs = [] } = {}) {
  const dir = tempDir('mock');
  const args = [path.join(IT_DIR, 'mock-provider.mjs'), '--port', '0'];
  if (keys) args.push('--keys', keys.join(','));
  if (verbose) args.push('--verbose');
  args.push(...extraArgs);
  const proc = spawnProcess('mock', process.execPath, args, { logDir: dir });
  const port = await waitFor('mock provider to listen', () => {
    const line = fs.readFileSync(proc.outPath, 'utf8').split('\n').find((l) => l.startsWith('{"listening"'));
    return line ? JSON.parse(line).listening : null;
  }, { timeoutMs: 10000, intervalMs: 20, check: () => proc.assertRunning() });
  const client = new MockClient(port);
  client.proc = proc;
  client.stop = () => proc.stop({ sig: 'SIGTERM', timeoutMs: 3000 });
  return client;
}
