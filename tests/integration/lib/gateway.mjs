// Starts the gateway under test: the all-in-one binary, or the five services as separate
// processes, with a config written into a temp DATA_DIR.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, REPO_ROOT, spawnProcess, tcpConnectable, tempDir, waitFor } from './procs.mjs';

export const BUILD_DIR = process.env.OMNI_BUILD_DIR
  ? path.resolve(process.env.OMNI_BUILD_DIR)
  : path.join(REPO_ROOT, 'build');

// Where CMake may put each binary (the subdir of its CMakeLists, or the build root).
const BINARIES = {
  omniroute: ['apps/omniroute/omniroute', 'omniroute', 'bin/omniroute'],
  edge: ['services/edge/omniroute-edge', 'omniroute-edge', 'bin/omniroute-edge'],
  router: ['services/router/omniroute-router', 'omniroute-router', 'bin/omniroute-router'],
  translator: ['services/translator/omniroute-translator', 'omniroute-translator', 'bin/omniroute-translator'],
  accounts: ['services/accounts/omniroute-accounts', 'omniroute-accounts', 'bin/omniroute-accounts'],
  usage: ['services/usage/omniroute-usage', 'omniroute-usage', 'bin/omniroute-usage'],
};

export const SERVICES = ['accounts', 'usage', 'translator', 'router'];

export function findBinary(name) {
  for (const rel of BINARIES[name]) {
    const p = path.join(BUILD_DIR, rel);
    try {
      const st = fs.statSync(p);
      if (st.isFile() && (st.mode & 0o111)) return p;
    } catch {
      // not there
    }
  }
  return null;
}

// The binaries a mode needs that are missing (empty when all are there).
export function missingBinaries(mode) {
  const names = mode === 'allinone' ? ['omniroute'] : ['edge', ...SERVICES];
  return names.filter((n) => !findBinary(n)).map((n) => `${n} (looked for ${BINARIES[n].map((r) =>
    path.join(BUILD_DIR, r)).join(', ')})`);
}

export const TEST_SECRETS = {
  OMNIROUTE_ADMIN_KEY: 'sk-admin-integration-test-0001',
  API_KEY_SECRET: 'integration-api-key-secret',
  JWT_SECRET: 'integration-jwt-secret',
  INITIAL_PASSWORD: 'integration-password',
};

// The inherited environment minus anything that would change what the gateway does.
function baseEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^(OMNIROUTE_|REDIS_URL$|DATABASE_URL$|PORT$|DATA_DIR$|REQUIRE_API_KEY$|API_KEY_SECRET$|JWT_SECRET$|INITIAL_PASSWORD$|STORAGE_ENCRYPTION_KEY$)/.test(k)) {
      delete env[k];
    }
  }
  return env;
}

async function readyz(port) {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
    await r.arrayBuffer();
    return r.status === 200;
  } catch {
    return false;
  }
}

function sqliteRows(dbPath, sql) {
  return new Promise((resolve, reject) => {
    execFile('sqlite3', ['-json', '-cmd', '.timeout 2000', dbPath, sql], { timeout: 10000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          err.message += `\n${stderr}`;
          reject(err);
        } else {
          resolve(stdout.trim() ? JSON.parse(stdout) : []);
        }
      });
  });
}

function sqlString(s) {
  return `'${String(s).replace(/'/g, "''")}'`;
}

// Options:
//   mode: 'allinone' | 'distributed'
//   config: an object, written as the YAML config (JSON is YAML); server.port is filled in
//   env: extra environment for every process
//   redis, postgres: handles from startRedis()/startPostgres() (distributed needs both;
//                    the all-in-one uses them only when given)
//   readyTimeoutMs: how long to wait for /readyz
//   routers, edges: distributed mode only: how many router and edge processes (default 1
//                   each). Edge i talks to router i mod routers; all share Redis. The first
//                   of each is procs.router / procs.edge, the others procs['router-2'], ...;
//                   gw.edges lists {proc, port, url, baseURL} of every edge.
//                   gw.metrics maps each service process (accounts, usage, translator,
//                   router, router-2, ...) to the URL of its Prometheus /metrics.
export async function startGateway({ mode, config = {}, env = {}, redis = null, postgres = null,
  readyTimeoutMs = 30000, routers = 1, edges = 1 } = {}) {
  if (mode !== 'allinone' && mode !== 'distributed') throw new Error(`unknown mode ${mode}`);
  const missing = missingBinaries(mode);
  if (missing.length) throw new Error(`gateway binaries missing:\n  ${missing.join('\n  ')}`);
  if (mode === 'distributed' && (!redis || !postgres)) throw new Error('distributed mode needs redis and postgres');

  const dataDir = tempDir(`gw-${mode}`);
  const port = await freePort();
  const routerCount = mode === 'distributed' ? Math.max(1, routers) : 1;
  const edgeCount = mode === 'distributed' ? Math.max(1, edges) : 1;
  const edgePorts = [port];
  for (let i = 1; i < edgeCount; i++) edgePorts.push(await freePort());
  const cfg = structuredClone(config);
  cfg.server = { host: '127.0.0.1', ...(cfg.server || {}), port };
  const configPath = path.join(dataDir, 'config.yaml');
  fs.writeFileSync(configPath, `${JSON.stringify(cfg, null, 2)}\n`);

  const common = { ...baseEnv(), ...TEST_SECRETS, ...env };
  const procs = {};
  // How each process was started (gw.respawn starts it again the same way).
  const specs = {};
  const spawnNamed = (name, bin, args, opts, ready) => {
    specs[name] = { bin, args, opts, ready };
    procs[name] = spawnProcess(name, bin, args, opts);
    return procs[name];
  };
  const gw = {
    mode, port, dataDir, configPath, config: cfg, procs, metrics: {},
    url: `http://127.0.0.1:${port}`,
    baseURL: `http://127.0.0.1:${port}/v1`,
    adminKey: common.OMNIROUTE_ADMIN_KEY,
    sqlitePath: cfg.storage?.sqlite_path || path.join(dataDir, 'omniroute.db'),
    postgres, redis,
    // The process that serves HTTP (the one to SIGTERM for a drain test).
    get edge() { return mode === 'allinone' ? procs.omniroute : procs.edge; },
    // Every HTTP front: {proc, port, url, baseURL}.
    get edges() {
      return edgePorts.map((p, i) => ({
        proc: mode === 'allinone' ? procs.omniroute : procs[i === 0 ? 'edge' : `edge-${i + 1}`],
        port: p, url: `http://127.0.0.1:${p}`, baseURL: `http://127.0.0.1:${p}/v1`,
      }));
    },
    // The router processes (distributed mode).
    get routers() {
      return Object.entries(procs).filter(([k]) => k === 'router' || k.startsWith('router-')).map(([, p]) => p);
    },
    logs(n = 50) {
      return Object.values(procs).map((p) => p.tail(n)).join('');
    },
    async stop() {
      const fronts = Object.entries(procs).filter(([k]) => k === 'omniroute' || k === 'edge' || k.startsWith('edge-'))
        .map(([, p]) => p);
      await Promise.all(fronts.map((p) => p.stop({ sig: 'SIGTERM', timeoutMs: 10000 })));
      await Promise.all(Object.values(procs).map((p) => p.stop({ sig: 'SIGTERM', timeoutMs: 5000 })));
    },
    // Kills one process (SIGKILL unless told) and waits for it to be gone.
    async kill(name, { sig = 'SIGKILL', timeoutMs = 5000 } = {}) {
      if (!procs[name]) throw new Error(`no process ${name}`);
      return procs[name].stop({ sig, timeoutMs });
    },
    // Starts a process that has exited again, exactly as it was started (same address,
    // DATA_DIR, config; its log files are appended to), and waits until it is ready (a
    // service accepts connections, an edge answers /readyz).
    async respawn(name, { readyTimeoutMs: timeoutMs = readyTimeoutMs } = {}) {
      const spec = specs[name];
      if (!spec) throw new Error(`no process ${name}`);
      if (procs[name]?.running) throw new Error(`${name} is still running`);
      const p = spawnProcess(name, spec.bin, spec.args, spec.opts);
      procs[name] = p;
      await waitFor(`${name} to be ready again`, spec.ready, { timeoutMs, intervalMs: 50, check: () => p.assertRunning() });
      return p;
    },
    // The usage rows recorded for a request id, from wherever this mode stores them.
    async usageRows(requestId) {
      const sql = `select * from usage_records where request_id = ${sqlString(requestId)}`;
      if (mode === 'distributed' || (postgres && common.DATABASE_URL)) return postgres.rows(sql);
      if (!fs.existsSync(gw.sqlitePath)) return [];
      return sqliteRows(gw.sqlitePath, sql);
    },
  };
  const checkAll = () => Object.values(procs).forEach((p) => p.assertRunning());

  try {
    if (mode === 'allinone') {
      const e = { ...common, PORT: String(port), DATA_DIR: dataDir };
      if (redis) e.REDIS_URL = redis.url;
      if (postgres) e.DATABASE_URL = postgres.url;
      spawnNamed('omniroute', findBinary('omniroute'), ['--config', configPath],
        { env: e, cwd: dataDir, logDir: dataDir }, () => readyz(port));
    } else {
      const addrs = {};
      for (const s of SERVICES) addrs[s] = `127.0.0.1:${await freePort()}`;
      const routerAddrs = [addrs.router];
      for (let i = 1; i < routerCount; i++) routerAddrs.push(`127.0.0.1:${await freePort()}`);
      const svcEnv = {
        ...common,
        OMNIROUTE_ROUTER_ADDR: addrs.router,
        OMNIROUTE_TRANSLATOR_ADDR: addrs.translator,
        OMNIROUTE_ACCOUNTS_ADDR: addrs.accounts,
        OMNIROUTE_USAGE_ADDR: addrs.usage,
      };
      // Who needs which store: router (Redis state, its tables), accounts (its tables,
      // revocation pub/sub), usage (records, reservations); the edge owns nothing.
      const stores = {
        router: { REDIS_URL: redis.url, DATABASE_URL: postgres.url },
        accounts: { REDIS_URL: redis.url, DATABASE_URL: postgres.url },
        usage: { REDIS_URL: redis.url, DATABASE_URL: postgres.url },
        translator: {},
      };
      const startSvc = async (s, name = s, addr = addrs[s]) => {
        const dir = path.join(dataDir, name);
        fs.mkdirSync(dir, { recursive: true });
        const svcPort = Number(addr.split(':')[1]);
        const metricsPort = await freePort();
        gw.metrics[name] = `http://127.0.0.1:${metricsPort}/metrics`;
        spawnNamed(name, findBinary(s), ['--config', configPath, '--listen', addr,
          '--metrics-listen', `127.0.0.1:${metricsPort}`],
          { env: { ...svcEnv, ...stores[s], DATA_DIR: dir }, cwd: dir, logDir: dataDir }, () => tcpConnectable(svcPort));
        await waitFor(`${name} to accept connections on ${addr}`, () => tcpConnectable(svcPort),
          { timeoutMs: readyTimeoutMs, check: checkAll });
      };
      // The router learns connections from accounts and prices from usage: start those first.
      await Promise.all(['accounts', 'usage', 'translator'].map((s) => startSvc(s)));
      await Promise.all(routerAddrs.map((a, i) => startSvc('router', i === 0 ? 'router' : `router-${i + 1}`, a)));
      edgePorts.forEach((p, i) => {
        const name = i === 0 ? 'edge' : `edge-${i + 1}`;
        const edgeDir = path.join(dataDir, name);
        fs.mkdirSync(edgeDir, { recursive: true });
        spawnNamed(name, findBinary('edge'), ['--config', configPath],
          { env: { ...svcEnv, OMNIROUTE_ROUTER_ADDR: routerAddrs[i % routerAddrs.length], PORT: String(p),
            DATA_DIR: edgeDir }, cwd: edgeDir, logDir: dataDir }, () => readyz(p));
      });
    }
    for (const p of edgePorts) {
      await waitFor(`${mode} gateway /readyz on port ${p}`, () => readyz(p),
        { timeoutMs: readyTimeoutMs, intervalMs: 50, check: checkAll });
    }
  } catch (e) {
    // Every process's log, except one the error already carries.
    const logs = Object.values(procs).filter((p) => !e.message.includes(`----- ${p.name} (pid ${p.pid})`))
      .map((p) => p.tail(50)).join('');
    await gw.stop().catch(() => {});
    e.message += `\n${logs}`;
    throw e;
  }
  return gw;
}
