// Process and temp-dir plumbing for the integration tests: free ports, child processes in
// their own process group with their output in files, and a clean-up that runs however the
// test process ends.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const LIB_DIR = path.dirname(fileURLToPath(import.meta.url));
export const IT_DIR = path.resolve(LIB_DIR, '..');
export const REPO_ROOT = path.resolve(IT_DIR, '..', '..');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- temp dir ------------------------------------------------------------------------

let tempRoot = null;
let failed = false;

// One temp dir per test process, short (unix socket paths must stay under 107 bytes) and
// traversable by other users (PostgreSQL runs as `postgres`). Removed at exit unless a test
// failed or OMNI_KEEP_TMP=1.
export function tempRootDir() {
  if (!tempRoot) {
    tempRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'omni-it-'));
    fs.chmodSync(tempRoot, 0o755);
  }
  return tempRoot;
}

export function tempDir(name) {
  const d = fs.mkdtempSync(path.join(tempRootDir(), `${name}-`));
  fs.chmodSync(d, 0o755);
  return d;
}

// Marks the run as failed so the temp dir (with every log) is kept for a look.
export function markFailed() {
  failed = true;
}

// ---- ports ---------------------------------------------------------------------------

const handedOut = new Set();

// A TCP port on 127.0.0.1 that was free a moment ago and not handed out before by us.
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const p = srv.address().port;
        srv.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: no free port found');
}

export function tcpConnectable(port, host = '127.0.0.1', timeoutMs = 500) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

// Resolves to what `promise` resolves to, or to `fallback` after ms (the timer is cleared
// either way, so it never keeps the process alive).
export function withTimeout(promise, ms, fallback = null) {
  let timer;
  const t = new Promise((r) => { timer = setTimeout(() => r(fallback), ms); });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Polls fn() until it returns a truthy value; throws with `what` after timeoutMs.
// `check()` may throw to abort early (e.g. the process died).
export async function waitFor(what, fn, { timeoutMs = 20000, intervalMs = 50, check } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr = null;
  for (;;) {
    if (check) check();
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
        (lastErr ? ` (last error: ${lastErr.message})` : ''));
    }
    await sleep(intervalMs);
  }
}

// ---- processes -----------------------------------------------------------------------

const live = new Set();

// If this process dies without running its exit handler (SIGKILL, a runner that went away),
// a small detached shell kills the process groups listed in a file under the temp dir.
let reaper = null;

function pgidFile() {
  return path.join(tempRootDir(), '.pgids');
}

function writePgids() {
  try {
    fs.writeFileSync(pgidFile(), [...live].map((p) => `${p.pid} ${p.killSignal.replace(/^SIG/, '')}\n`).join(''));
  } catch {
    // temp dir already gone
  }
}

function ensureReaper() {
  if (reaper) return;
  const f = pgidFile();
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done
[ -f '${f}' ] || exit 0
while read -r g s; do kill -s "$s" -- "-$g" 2>/dev/null; done < '${f}'
sleep 1
while read -r g s; do kill -s KILL -- "-$g" 2>/dev/null; done < '${f}'`;
  reaper = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
  reaper.unref();
}

export class Proc {
  constructor(name, cmd, args, { env, cwd, uid, gid, logDir, killSignal = 'SIGKILL' } = {}) {
    this.name = name;
    this.cmd = cmd;
    this.args = args;
    this.killSignal = killSignal;
    const dir = logDir || tempDir('logs');
    this.outPath = path.join(dir, `${name}.out.log`);
    this.errPath = path.join(dir, `${name}.err.log`);
    const out = fs.openSync(this.outPath, 'a');
    const err = fs.openSync(this.errPath, 'a');
    this.child = spawn(cmd, args, {
      env: env || process.env,
      cwd,
      uid,
      gid,
      detached: true, // own process group: we can signal everything it started
      stdio: ['ignore', out, err],
    });
    fs.closeSync(out);
    fs.closeSync(err);
    this.pid = this.child.pid;
    this.exit = null;
    this.spawnError = null;
    live.add(this);
    ensureReaper();
    writePgids();
    this.exited = new Promise((resolve) => {
      this.child.once('error', (e) => {
        this.spawnError = e;
        this.exit = { code: null, signal: null, error: e };
        live.delete(this);
        writePgids();
        resolve(this.exit);
      });
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        writePgids();
        resolve(this.exit);
      });
    });
  }

  get running() {
    return this.exit === null;
  }

  // Throws if the process is gone (for use as waitFor's check).
  assertRunning() {
    if (!this.running) {
      const how = this.exit.error ? `failed to start: ${this.exit.error.message}`
        : `exited with code ${this.exit.code} signal ${this.exit.signal}`;
      throw new Error(`${this.name} ${how}\n${this.tail(50)}`);
    }
  }

  signal(sig, group = false) {
    if (!this.running || !this.pid) return;
    try {
      process.kill(group ? -this.pid : this.pid, sig);
    } catch {
      // already gone
    }
  }

  // Sends `sig` (to the process only), waits up to timeoutMs, then kills the whole group.
  async stop({ sig = 'SIGTERM', timeoutMs = 5000 } = {}) {
    if (this.running) {
      this.signal(sig);
      let timer;
      const t = new Promise((r) => { timer = setTimeout(() => r('timeout'), timeoutMs); });
      const first = await Promise.race([this.exited, t]);
      clearTimeout(timer);
      if (first === 'timeout') {
        this.signal('SIGKILL', true);
        await this.exited;
      }
    }
    this.signal('SIGKILL', true); // stragglers in its group
    return this.exit;
  }

  stdout() {
    return readOr(this.outPath);
  }

  stderr() {
    return readOr(this.errPath);
  }

  // The last n lines of stdout and of stderr, labelled.
  tail(n = 50) {
    const last = (s) => s.split('\n').filter((l, i, a) => l || i < a.length - 1).slice(-n).join('\n');
    return `----- ${this.name} (pid ${this.pid}) stdout: ${this.outPath}\n${last(this.stdout())}\n` +
      `----- ${this.name} stderr: ${this.errPath}\n${last(this.stderr())}\n`;
  }
}

function readOr(p) {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

export function spawnProcess(name, cmd, args, opts) {
  return new Proc(name, cmd, args, opts);
}

// Kills every process we started, synchronously (safe in an 'exit' handler).
export function killAllSync() {
  for (const p of [...live]) {
    if (p.killSignal !== 'SIGKILL') p.signal(p.killSignal, true);
  }
  // Give the ones with a polite signal (PostgreSQL: SIGQUIT) a moment, then be blunt.
  if ([...live].some((p) => p.killSignal !== 'SIGKILL')) spawnSync('sleep', ['0.3']);
  for (const p of [...live]) p.signal('SIGKILL', true);
  live.clear();
  if (reaper) {
    try {
      process.kill(reaper.pid, 'SIGKILL');
    } catch {
      // gone
    }
    reaper = null;
  }
}

function removeTempRoot() {
  if (!tempRoot) return;
  if (failed || process.env.OMNI_KEEP_TMP === '1' || process.exitCode) {
    process.stderr.write(`integration: logs and data kept in ${tempRoot}\n`);
    return;
  }
  try {
    fs.rmSync(tempRoot, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

process.once('exit', () => {
  killAllSync();
  removeTempRoot();
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    failed = true;
    killAllSync();
    removeTempRoot();
    process.exit(128 + (os.constants.signals[sig] || 1));
  });
}
