// A throwaway redis-server on a free loopback port.

import net from 'node:net';
import { freePort, spawnProcess, tempDir, waitFor } from './procs.mjs';

function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
  });
}

// Sends one command (an array of strings) and returns the raw RESP reply text.
export function redisCommand(port, args) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    s.setTimeout(2000, () => {
      s.destroy();
      reject(new Error('redis command timed out'));
    });
    s.once('error', reject);
    s.once('connect', () => {
      s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`);
    });
    s.on('data', (d) => {
      buf += d.toString();
      // Good enough for the simple replies tests need (status, integer, bulk, short arrays).
      setTimeout(() => {
        s.destroy();
        resolve(buf);
      }, 20);
    });
  });
}

export async function startRedis({ bin = 'redis-server' } = {}) {
  const port = await freePort();
  const dir = tempDir('redis');
  const proc = spawnProcess('redis', bin, [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--dir', dir, '--protected-mode', 'no',
  ], { logDir: dir });
  await waitFor(`redis on port ${port}`, () => ping(port), {
    timeoutMs: 10000, check: () => proc.assertRunning(),
  });
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    proc,
    command: (...args) => redisCommand(port, args),
    stop: () => proc.stop({ sig: 'SIGTERM', timeoutMs: 3000 }),
  };
}
