// Checks deploy/docker/Dockerfile without a Docker engine.
//
//   node deploy/tools/check-dockerfile.mjs [--smoke BUILD_DIR] [DOCKERFILE]
//
// 1. lint: dockerfile-utils (the linter of VS Code's Docker language server: syntax,
//    instructions and their flags, JSON forms, variable substitution); any diagnostic,
//    warning or error, fails.
// 2. rules of this project: the build stage is debian:12 and runs scripts/install-deps.sh
//    and scripts/build.sh; the runtime stages are debian:12-slim; every image target
//    (omniroute edge router translator accounts usage; the all-in-one last, the default)
//    runs as a numeric non-root USER, has a HEALTHCHECK, an exec-form ENTRYPOINT that is
//    the binary it copies from the build stage, EXPOSE, the OCI labels, OMNIROUTE_CONFIG and
//    DATA_DIR.
// 3. --smoke BUILD_DIR: runs each target's binary from BUILD_DIR the way its image would
//    (the stage's ENV, the image's default config file, a scratch DATA_DIR, free ports),
//    runs the target's HEALTHCHECK command against it until it passes, then sends SIGTERM
//    and expects exit status 0.
// Exit 0 when all pass, 1 otherwise.
import fs from "node:fs";
import os from "node:os";
import net from "node:net";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import utils from "dockerfile-utils";
import ast from "dockerfile-ast";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const args = process.argv.slice(2);
let smoke = null;
let file = path.join(repo, "deploy/docker/Dockerfile");
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--smoke") smoke = args[++i];
  else file = args[i];
}
const TARGETS = ["omniroute", "edge", "router", "translator", "accounts", "usage"];
const HTTP = new Set(["omniroute", "edge"]);
const content = fs.readFileSync(file, "utf8");
let failures = 0;
const fail = (msg) => {
  failures++;
  console.log(`FAIL ${msg}`);
};

// ---------------------------------------------------------------- 1. lint
const diags = utils.validate(content);
for (const d of diags) {
  fail(`lint: line ${d.range.start.line + 1}: ${d.message}`);
}
if (diags.length === 0) console.log(`ok   lint (dockerfile-utils): ${path.relative(repo, file)}`);

// ---------------------------------------------------------------- 2. stages
const df = ast.DockerfileParser.parse(content);
const stages = [];
for (const ins of df.getInstructions()) {
  const kw = ins.getKeyword();
  if (kw === "FROM") {
    stages.push({ name: ins.getBuildStage(), from: ins.getImage(), ins: [] });
  } else if (stages.length) {
    stages[stages.length - 1].ins.push(ins);
  }
}
const byName = new Map(stages.map((s) => [s.name, s]));
const chain = (s) => {
  const out = [];
  while (s) {
    out.unshift(s);
    s = byName.get(s.from);
  }
  return out;
};
const of = (s, kw) => s.ins.filter((i) => i.getKeyword() === kw);
const jsonArgs = (i) => {
  const text = i.getArgumentsContent();
  const m = text.match(/\[.*\]\s*$/s);
  try {
    return m ? JSON.parse(m[0]) : null;
  } catch {
    return null;
  }
};
const envOf = (s) => {
  const env = {};
  for (const st of chain(s)) for (const i of of(st, "ENV")) for (const p of i.getProperties()) env[p.getName()] = p.getValue();
  return env;
};
const labelsOf = (s) => {
  const l = {};
  for (const st of chain(s)) for (const i of of(st, "LABEL")) for (const p of i.getProperties()) l[p.getName()] = p.getValue();
  return l;
};

const build = byName.get("build");
if (!build || build.from !== "debian:12") fail("stage build: must be FROM debian:12 AS build");
else {
  const runs = of(build, "RUN").map((i) => i.getArgumentsContent()).join("\n");
  if (!/scripts\/install-deps\.sh/.test(runs)) fail("stage build: does not run scripts/install-deps.sh");
  if (!/scripts\/build\.sh/.test(runs)) fail("stage build: does not run scripts/build.sh");
}
if (stages[stages.length - 1]?.name !== "omniroute") fail("the all-in-one (omniroute) must be the last stage, the default target");
const info = {};
for (const t of TARGETS) {
  const s = byName.get(t);
  if (!s) {
    fail(`no stage ${t}`);
    continue;
  }
  const c = chain(s);
  const problems = [];
  if (c[0].from !== "debian:12-slim") problems.push(`starts from ${c[0].from}, not debian:12-slim`);
  const users = c.flatMap((st) => of(st, "USER"));
  const user = users.length ? users[users.length - 1].getArgumentsContent().trim() : "root";
  if (!/^[1-9][0-9]*(:[0-9]+)?$/.test(user)) problems.push(`USER ${user}: must be a numeric non-root uid`);
  const hc = of(s, "HEALTHCHECK");
  const hcCmd = hc.length ? jsonArgs(hc[hc.length - 1]) : null;
  if (!hcCmd) problems.push("no HEALTHCHECK CMD in exec form");
  const ep = of(s, "ENTRYPOINT");
  const entry = ep.length ? jsonArgs(ep[ep.length - 1]) : null;
  if (!entry) problems.push("no ENTRYPOINT in exec form");
  if (of(s, "EXPOSE").length === 0) problems.push("no EXPOSE");
  const copy = of(s, "COPY").find((i) => i.getFromFlag()?.getValue() === "build");
  const [src, dst] = copy ? copy.getArguments().map((a) => a.getValue()) : [];
  if (!copy) problems.push("copies no binary from the build stage");
  else if (entry && entry[0] !== dst) problems.push(`ENTRYPOINT ${entry[0]} is not the copied binary ${dst}`);
  const labels = labelsOf(s);
  for (const l of ["title", "description", "version", "revision", "created", "source"]) {
    if (!labels[`org.opencontainers.image.${l}`]) problems.push(`no label org.opencontainers.image.${l}`);
  }
  const own = of(s, "LABEL").flatMap((i) => i.getProperties().map((p) => p.getName()));
  if (!own.includes("org.opencontainers.image.title")) problems.push("the stage sets no title label of its own");
  const env = envOf(s);
  if (env.OMNIROUTE_CONFIG !== "/etc/omniroute/omniroute.yaml") problems.push("ENV OMNIROUTE_CONFIG must be /etc/omniroute/omniroute.yaml");
  if (env.DATA_DIR !== "/var/lib/omniroute") problems.push("ENV DATA_DIR must be /var/lib/omniroute");
  if (!HTTP.has(t) && !env.OMNIROUTE_LISTEN) problems.push("no ENV OMNIROUTE_LISTEN");
  for (const p of problems) fail(`stage ${t}: ${p}`);
  if (!problems.length) console.log(`ok   stage ${t}: user ${user}, HEALTHCHECK, ENTRYPOINT ${entry[0]}, labels`);
  info[t] = { src, env, hcCmd, entry };
}

// The default config baked into the images: the file COPY'd to /etc/omniroute/omniroute.yaml.
const cfgCopy = byName.get("runtime") && of(byName.get("runtime"), "COPY").find((i) => /\/etc\/omniroute\/omniroute\.yaml/.test(i.getArgumentsContent()));
const defaultConfig = cfgCopy ? path.join(repo, cfgCopy.getArgumentsContent().trim().split(/\s+/)[0]) : null;
if (!defaultConfig || !fs.existsSync(defaultConfig)) fail("stage runtime: no default config copied to /etc/omniroute/omniroute.yaml");

// ---------------------------------------------------------------- 3. smoke
const freePort = () =>
  new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function smokeTarget(t) {
  const { src, env: imageEnv, hcCmd, entry } = info[t];
  const bin = path.join(smoke, src.replace(/^\/src\/build\//, ""));
  if (!fs.existsSync(bin)) return fail(`smoke ${t}: ${bin} not built`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `omni-smoke-${t}-`));
  const port = await freePort();
  const env = {
    PATH: process.env.PATH,
    ...imageEnv,
    HOME: dataDir,
    DATA_DIR: dataDir,
    OMNIROUTE_CONFIG: defaultConfig,
  };
  if (HTTP.has(t)) env.PORT = String(port);
  else env.OMNIROUTE_LISTEN = `127.0.0.1:${port}`;
  if (t === "edge") {
    for (const s of ["ROUTER", "TRANSLATOR", "ACCOUNTS", "USAGE"]) env[`OMNIROUTE_${s}_ADDR`] = "127.0.0.1:9";
  }
  const child = spawn(bin, entry.slice(1), { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  let healthy = false;
  let last = null;
  const deadline = Date.now() + 20000; // the machine may be busy compiling
  while (Date.now() < deadline && child.exitCode === null) {
    const r = spawnSync(hcCmd[0], hcCmd.slice(1), { env, timeout: 3000, encoding: "utf8" });
    last = r;
    if (r.status === 0) {
      healthy = true;
      break;
    }
    await sleep(100);
  }
  const startedOk = child.exitCode === null;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15000);
  const { code, signal } = await exited;
  clearTimeout(timer);
  fs.rmSync(dataDir, { recursive: true, force: true });
  const lastLine = stderr.trim().split("\n").pop();
  if (!startedOk) return fail(`smoke ${t}: ${path.basename(bin)} exited at start-up: ${lastLine}`);
  if (!healthy) return fail(`smoke ${t}: HEALTHCHECK never passed: ${(last?.stderr || "").trim()}`);
  if (code !== 0) return fail(`smoke ${t}: SIGTERM gave exit ${code ?? signal}: ${lastLine}`);
  console.log(`ok   smoke ${t}: ${path.basename(bin)} with the image's env and config, HEALTHCHECK passed, SIGTERM exit 0`);
}
if (smoke && failures === 0 && defaultConfig) {
  for (const t of TARGETS) await smokeTarget(t);
}
process.exit(failures ? 1 : 0);
