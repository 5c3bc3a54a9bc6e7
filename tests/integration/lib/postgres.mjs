// A throwaway PostgreSQL 15 cluster in a temp dir on a free loopback port.
// initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.

import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, spawnProcess, tempDir, waitFor } from './procs.mjs';

const PG_BIN = process.env.OMNI_PG_BIN || '/usr/lib/postgresql/15/bin';

function userIds(name) {
  const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error(`user ${name} does not exist`);
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

function psql(port, args, { db = 'postgres', timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres',
      '-d', db, ...args], { timeout: timeoutMs, encoding: 'utf8', env: { ...process.env, PGCONNECT_TIMEOUT: '3' } },
    (err, stdout, stderr) => {
      if (err) {
        err.message += `\n${stderr}`;
        reject(err);
      } else {
        resolve(stdout);
      }
    });
  });
}

// Options: database; settings: server settings over the defaults below, e.g.
// {synchronous_commit: 'on'} for a test that crashes the server and counts on every
// acknowledged commit surviving (with the default 'off', commits of the last few hundred ms
// before a crash are lost, as PostgreSQL documents).
export async function startPostgres({ database = 'omniroute', settings = {} } = {}) {
  const conf = { listen_addresses: '127.0.0.1', fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off',
    max_connections: '200', shared_buffers: '32MB', ...settings };
  const port = await freePort();
  const dir = tempDir('pg');
  const dataDir = path.join(dir, 'data');
  const sockDir = path.join(dir, 's');
  if (Buffer.byteLength(path.join(sockDir, `.s.PGSQL.${port}.lock`)) > 100) {
    throw new Error(`socket dir ${sockDir} is too long for a unix socket path`);
  }
  fs.mkdirSync(sockDir, { mode: 0o755 });
  let ids = {};
  if (process.getuid() === 0) {
    ids = userIds('postgres');
    fs.chownSync(dir, ids.uid, ids.gid);
    fs.chownSync(sockDir, ids.uid, ids.gid);
  }
  const env = { PATH: process.env.PATH, LANG: 'C', LC_ALL: 'C', HOME: dir };
  const init = spawnSync(path.join(PG_BIN, 'initdb'), ['-D', dataDir, '--no-sync', '-A', 'trust', '-U', 'postgres',
    '-E', 'UTF8', '--locale=C'], { ...ids, env, encoding: 'utf8', timeout: 60000 });
  if (init.status !== 0) {
    throw new Error(`initdb failed (status ${init.status}, ${init.error?.message || ''}):\n${init.stdout}\n${init.stderr}`);
  }
  let starts = 0;
  const launch = async () => {
    starts += 1;
    const p = spawnProcess(starts === 1 ? 'postgres' : `postgres-${starts}`, path.join(PG_BIN, 'postgres'), [
      '-D', dataDir, '-p', String(port), '-k', sockDir,
      ...Object.entries(conf).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    ], { ...ids, env, logDir: dir, killSignal: 'SIGQUIT' });
    await waitFor(`postgres on port ${port}`, async () => {
      await psql(port, ['-c', 'select 1'], { timeoutMs: 3000 });
      return true;
    }, { timeoutMs: 30000, intervalMs: 100, check: () => p.assertRunning() });
    return p;
  };
  const proc = await launch();
  await psql(port, ['-c', `create database ${database}`]);

  const url = `postgresql://postgres@127.0.0.1:${port}/${database}`;
  const handle = {
    port,
    url,
    dataDir,
    proc,
    // Runs SQL and returns psql's unaligned, tuples-only output (fields split by '|').
    query: (sql, db = database) => psql(port, ['-At', '-c', sql], { db }),
    // Runs a SELECT and returns its rows as objects.
    rows: async (sql, db = database) => {
      const out = await psql(port, ['-At', '-c', `select coalesce(json_agg(t), '[]') from (${sql}) t`], { db });
      return JSON.parse(out.trim() || '[]');
    },
    // Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL.
    stop: async () => {
      const e = await handle.proc.stop({ sig: 'SIGINT', timeoutMs: 10000 });
      return e;
    },
    // Crashes the cluster: SIGKILL to the postmaster (its backends, which PostgreSQL puts in
    // their own process groups, notice and exit). `sig: 'SIGQUIT'` is `pg_ctl stop -m
    // immediate` instead.
    kill: async ({ sig = 'SIGKILL' } = {}) => {
      handle.proc.signal(sig, sig === 'SIGKILL');
      return handle.proc.stop({ sig, timeoutMs: 10000 });
    },
    // Starts the cluster again (same data dir and port) after kill() or stop(); crash
    // recovery runs as needed.
    start: async () => {
      if (handle.proc.running) throw new Error('postgres is still running');
      handle.proc = await launch();
      return handle;
    },
    async restart(opts) {
      await handle.kill(opts);
      return handle.start();
    },
  };
  return handle;
}
