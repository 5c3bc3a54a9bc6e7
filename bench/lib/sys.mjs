// The machine: waiting until it is idle, CPU time and peak memory of process trees.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { sleep } from '../../tests/integration/lib/index.mjs';

// Processes that mean "someone is building": measurements wait until none runs.
export const BUSY_PROCS = (process.env.BENCH_BUSY_PROCS || 'cc1plus,cc1,lto1,ld,ld.gold,ld.lld')
  .split(',').map((s) => s.trim()).filter(Boolean);

// CPU used by processes that are not ours, in cores (0..ncpu): above this, the machine is busy.
export const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.25);

// "cc1plus×2" for each busy process name running (from a scan(), or a fresh one).
export function busyProcesses(procs = scan()) {
  const n = new Map();
  for (const [, p] of procs) if (BUSY_PROCS.includes(p.comm)) n.set(p.comm, (n.get(p.comm) || 0) + 1);
  return [...n].map(([k, v]) => `${k}×${v}`);
}

// Measures the CPU used on the machine between start and stop, split into ours (this node
// process and every process below it: everything the bench started, wrk included once
// reaped) and the rest. Kernel time for our own loopback traffic (softirq) is not counted.
export class LoadMeter {
  sample() {
    const procs = scan();
    const ours = new Map();
    for (const pid of tree(procs, process.pid)) ours.set(pid, procs.get(pid).ticks);
    return { t: Date.now(), cpu: cpuStat(), ours, procs };
  }

  start() {
    this.s0 = this.sample();
    return this;
  }

  // {foreign_cores, ours_cores, steal_cores, top: the busiest foreign processes}. A process
  // of ours that started after start() counts from zero; one that exited is lost.
  stop() {
    const a = this.s0;
    const b = this.sample();
    const secs = Math.max((b.t - a.t) / 1000, 0.001);
    let ours = 0;
    for (const [pid, ticks] of b.ours) ours += ticks - (a.ours.get(pid) ?? 0);
    const busy = b.cpu.busy - a.cpu.busy;
    const top = [];
    for (const [pid, p] of b.procs) {
      if (b.ours.has(pid)) continue;
      const d = p.ticks - (a.procs.get(pid)?.ticks ?? p.ticks);
      if (d > 0) top.push({ pid, comm: p.comm, cores: d / CLK_TCK / secs });
    }
    top.sort((x, y) => y.cores - x.cores);
    const r2 = (x) => Math.round(x * 100) / 100;
    return {
      foreign_cores: r2(Math.max(0, busy - ours) / CLK_TCK / secs),
      ours_cores: r2(ours / CLK_TCK / secs),
      steal_cores: r2((b.cpu.steal - a.cpu.steal) / CLK_TCK / secs),
      top: top.slice(0, 3).map((x) => `${x.comm}(${x.pid}) ${r2(x.cores)}`),
      procs: b.procs,
    };
  }
}

// Waits until no busy process has run and foreign CPU stayed under FOREIGN_MAX for settleMs.
// Spends at most what is left of budget.ms (shared by every wait of the run); when it runs
// out, returns {idle:false}.
export async function waitIdle(budget, meter, { settleMs = 3000, log = () => {} } = {}) {
  const t0 = Date.now();
  let lastLog = 0;
  let why = [];
  meter.start();
  for (;;) {
    await sleep(500);
    const now = Date.now();
    const busy = busyProcesses();
    if (busy.length) {
      why = busy;
      meter.start();
    } else if (now - meter.s0.t >= settleMs) {
      const load = meter.stop();
      if (load.foreign_cores <= FOREIGN_MAX) {
        budget.ms -= now - t0;
        return { idle: true, waitedMs: now - t0 };
      }
      why = [`other processes using ${load.foreign_cores} cores: ${load.top.join(', ')}`];
      meter.start();
    }
    if (now - t0 > budget.ms) {
      budget.ms = 0;
      return { idle: false, waitedMs: now - t0, busy: why };
    }
    if (why.length && budget.ms > 0 && now - lastLog > 30000) {
      log(`waiting for an idle machine (${why.join(', ')}; ${Math.round((budget.ms - (now - t0)) / 1000)} s of idle-wait budget left)`);
      lastLog = now;
    }
  }
}

// Scans for busy processes every second and measures foreign CPU until the returned stop()
// is called; stop() resolves {busy: names seen, ...LoadMeter.stop()}.
export function watchLoad(meter) {
  let seen = [];
  let stopped = false;
  meter.start();
  const loop = (async () => {
    while (!stopped) {
      await sleep(1000);
      const b = busyProcesses();
      if (b.length && !seen.length) seen = b;
    }
  })();
  return async () => {
    stopped = true;
    const load = meter.stop();
    await loop;
    delete load.procs;
    return { busy: seen, ...load };
  };
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

// pid → {comm, ppid, ticks (utime+stime of all its threads)} for every process.
function scan() {
  const out = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const close = s.lastIndexOf(')');
      const f = s.slice(close + 2).split(' '); // f[0] is field 3 (state)
      const pid = Number(d);
      // This node process also counts the children it has reaped (wrk, once it exited).
      const children = pid === process.pid ? Number(f[13]) + Number(f[14]) : 0;
      out.set(pid, { comm: s.slice(s.indexOf('(') + 1, close), ppid: Number(f[1]),
        ticks: Number(f[11]) + Number(f[12]) + children });
    } catch {
      // gone
    }
  }
  return out;
}

// The pids of `root` and of everything below it (by parent pid: process groups would miss
// PostgreSQL's backends, which call setsid()).
function tree(procs, root) {
  const children = new Map();
  for (const [pid, p] of procs) {
    if (!children.has(p.ppid)) children.set(p.ppid, []);
    children.get(p.ppid).push(pid);
  }
  const out = new Set();
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop();
    if (out.has(pid) || !procs.has(pid)) continue;
    out.add(pid);
    todo.push(...(children.get(pid) || []));
  }
  return out;
}

// The machine's CPU time so far (ticks): busy (user, nice, system) and stolen by the host.
function cpuStat() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: f[0] + f[1] + f[2], steal: f[7] || 0 };
}

// CPU milliseconds used so far by each named process tree ({name: root pid}): a harness
// process and everything it started (nginx's workers, PostgreSQL's backends). Processes that
// exited between two samples are not counted.
export function cpuSample(roots) {
  const procs = scan();
  const res = {};
  for (const [name, root] of Object.entries(roots)) {
    let ticks = 0;
    for (const pid of tree(procs, root)) ticks += procs.get(pid).ticks;
    res[name] = (ticks * 1000) / CLK_TCK;
  }
  return res;
}

export function cpuDelta(before, after) {
  const d = {};
  for (const k of Object.keys(after)) d[k] = Math.round((after[k] - (before[k] ?? 0)) * 10) / 10;
  return d;
}

// Peak resident memory (VmHWM, KiB) of one process; null when gone.
export function peakRssKb(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export function machineInfo() {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    cpus: cpus.length,
    cpu_model: cpus[0]?.model,
    mem_gib: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    loadavg: os.loadavg(),
  };
}
