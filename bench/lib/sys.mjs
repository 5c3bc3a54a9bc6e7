// The machine: waiting until no compiler runs, CPU time and peak memory of process groups.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { sleep } from '../../tests/integration/lib/index.mjs';

// Processes that mean "someone is building": measurements wait until none runs.
export const BUSY_PROCS = (process.env.BENCH_BUSY_PROCS || 'cc1plus,cc1,lto1,ld,ld.gold,ld.lld')
  .split(',').map((s) => s.trim()).filter(Boolean);

export function busyProcesses() {
  const found = [];
  for (const name of BUSY_PROCS) {
    const r = spawnSync('pgrep', ['-x', name], { encoding: 'utf8' });
    const pids = (r.stdout || '').trim().split('\n').filter(Boolean);
    if (pids.length) found.push(`${name}×${pids.length}`);
  }
  return found;
}

// Waits until no busy process has been seen for settleMs. Spends at most what is left of
// budget.ms (shared by every wait of the run); when it runs out, returns {idle:false}.
export async function waitIdle(budget, { settleMs = 3000, log = () => {} } = {}) {
  const t0 = Date.now();
  let quietSince = null;
  let lastLog = 0;
  for (;;) {
    const busy = busyProcesses();
    const now = Date.now();
    if (busy.length) {
      quietSince = null;
      if (now - lastLog > 30000) {
        log(`waiting for an idle machine (running: ${busy.join(', ')}; ${Math.round(budget.ms / 1000)} s of idle-wait budget left)`);
        lastLog = now;
      }
    } else if (quietSince === null) {
      quietSince = now;
    } else if (now - quietSince >= settleMs) {
      budget.ms -= now - t0;
      return { idle: true, waitedMs: now - t0 };
    }
    if (now - t0 > budget.ms) {
      budget.ms = 0;
      return { idle: false, waitedMs: now - t0, busy };
    }
    await sleep(500);
  }
}

// Polls busyProcesses() every second until stop() is called; tells whether any was seen.
export function watchBusy() {
  let seen = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const b = busyProcesses();
      if (b.length && !seen.length) seen = b;
      await sleep(1000);
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    return seen;
  };
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

// pid → {pgrp, ticks (utime+stime of all its threads)} for every process.
function allStats() {
  const out = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
      out.set(Number(d), { pgrp: Number(f[2]), ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // gone
    }
  }
  return out;
}

// CPU milliseconds used so far by each named process group ({name: pgid}); a group is a
// harness process and everything it started (nginx workers, PostgreSQL backends).
// Processes that exited between two samples are not counted.
export function cpuSample(groups) {
  const stats = allStats();
  const res = {};
  for (const [name, pgid] of Object.entries(groups)) {
    let ticks = 0;
    for (const [, s] of stats) if (s.pgrp === pgid) ticks += s.ticks;
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
