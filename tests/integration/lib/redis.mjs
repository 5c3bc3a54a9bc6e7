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

// Options: bin, port (default: a free one).
// The handle: {port, url, proc, command(...args), stop(), kill(), restart()}. kill() ends the
// server abruptly (SIGKILL); restart() starts an empty one on the same port.
export async function startRedis({ bin = 'redis-server', port = null } = {}) {
  const p = port || await freePort();
  const dir = tempDir('redis');
  let starts = 0;
  const launch = async () => {
    starts += 1;
    const proc = spawnProcess(starts === 1 ? 'redis' : `redis-${starts}`, bin, [
      '--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--daemonize', 'no', '--dir', dir, '--protected-mode', 'no',
    ], { logDir: dir });
    await waitFor(`redis on port ${p}`, () => ping(p), {
      timeoutMs: 10000, check: () => proc.assertRunning(),
    });
    return proc;
  };
  const handle = {
    port: p,
    url: `redis://127.0.0.1:${p}`,
    proc: await launch(),
    command: (...args) => redisCommand(p, args),
    stop: () => handle.proc.stop({ sig: 'SIGTERM', timeoutMs: 3000 }),
    kill: () => handle.proc.stop({ sig: 'SIGKILL', timeoutMs: 3000 }),
    async restart() {
      await handle.kill();
      handle.proc = await launch();
      return handle;
    },
  };
  return handle;
}
