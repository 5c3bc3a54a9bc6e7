// Runs wrk with bench/wrk/post.lua and returns its results as numbers.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnProcess, withTimeout } from '../../tests/integration/lib/index.mjs';

export const WRK_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'wrk', 'post.lua');

// "10s", "2m", "500ms" or a bare number of seconds → seconds.
export function parseDuration(s) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(String(s));
  if (!m) throw new Error(`bad duration '${s}' (use e.g. 10s, 1m)`);
  const v = Number(m[1]);
  return m[2] === 'ms' ? v / 1000 : m[2] === 'm' ? v * 60 : v;
}

let seq = 0;

// Options: url, threads, connections, seconds, bodyFile, apiKey, timeoutS (per request),
// logDir, label. Resolves {result, raw, args, exit}; result is null when wrk printed no
// BENCH_JSON line (it failed), raw is wrk's whole output.
export async function runWrk({ url, threads, connections, seconds, bodyFile, apiKey = '', timeoutS = 10,
  logDir, label = 'wrk' }) {
  const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, `--timeout`, `${timeoutS}s`, '--latency',
    '-s', WRK_SCRIPT, url];
  const name = `${String(++seq).padStart(3, '0')}-${label}`.replace(/[^\w.-]+/g, '_');
  const proc = spawnProcess(name, 'wrk', args, {
    env: { ...process.env, BENCH_BODY_FILE: bodyFile, BENCH_API_KEY: apiKey }, logDir,
  });
  // wrk stops by itself after -d; a hard stop well after that in case it hangs.
  const exit = await withTimeout(proc.exited, (seconds + timeoutS + 30) * 1000, 'hung');
  if (exit === 'hung') await proc.stop({ sig: 'SIGKILL', timeoutMs: 1000 });
  const raw = `${proc.stdout()}${proc.stderr()}`;
  const line = raw.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  const result = line ? JSON.parse(line.slice('BENCH_JSON '.length)) : null;
  return {
    result,
    raw: raw.split('\n').filter((l) => !l.startsWith('BENCH_JSON ')).join('\n').trim(),
    args: ['wrk', ...args],
    exit: exit === 'hung' ? { hung: true } : exit,
    logs: [proc.outPath, proc.errPath],
  };
}

export function errorCount(result) {
  if (!result) return Infinity;
  return Object.values(result.errors).reduce((a, b) => a + b, 0);
}

export function fmtWrkErrors(result) {
  if (!result) return 'wrk gave no result';
  return Object.entries(result.errors).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
}

// Writes a request body where post.lua reads it (BENCH_BODY_FILE).
export function writeBody(dir, name, body) {
  const p = path.join(dir, `${name}.json`);
  fs.writeFileSync(p, typeof body === 'string' ? body : JSON.stringify(body));
  return p;
}
