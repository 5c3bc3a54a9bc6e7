// The environment each service of the distributed deployment needs, shared by the checks of
// the Kubernetes manifests (validate-k8s.mjs) and of the compose file (this script's CLI).
//
//   docker-compose -f deploy/compose/docker-compose.yml --env-file F config \
//     | node deploy/tools/required-env.mjs --compose -
//
// A service started without one of these variables either fails (DATABASE_URL missing means
// a private SQLite file per replica, OMNIROUTE_ACCOUNTS_ADDR missing means a router that never
// sees connections made through the admin API) or generates its own secret, which the other
// replicas do not share: sessions signed by one accounts replica fail on the edges, and
// credentials encrypted by one accounts replica cannot be read by another.
// Exit status of the CLI: 0 covered, 1 a service misses a variable or disagrees on a shared
// one, 2 usage error.
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";

// Service (the app.kubernetes.io/component label, the compose service name) -> variables.
export const REQUIRED_ENV = {
  edge: [
    "OMNIROUTE_ROUTER_ADDR", "OMNIROUTE_TRANSLATOR_ADDR", "OMNIROUTE_ACCOUNTS_ADDR",
    "OMNIROUTE_USAGE_ADDR",
    "OMNIROUTE_ADMIN_KEY", // the admin API's Bearer token
    "JWT_SECRET", // verifies the dashboard's session cookies, which accounts signs
  ],
  router: ["REDIS_URL", "OMNIROUTE_ACCOUNTS_ADDR"],
  translator: [],
  accounts: [
    "DATABASE_URL", // one store for every replica
    "STORAGE_ENCRYPTION_KEY", // provider credentials at rest
    "JWT_SECRET", // signs session cookies
    "API_KEY_SECRET", // client key checksums
    "INITIAL_PASSWORD", // the first admin login
  ],
  usage: ["DATABASE_URL"],
};

// Variables that must have one value wherever they are set.
export const SHARED_ENV = [
  "OMNIROUTE_ADMIN_KEY", "API_KEY_SECRET", "JWT_SECRET", "INITIAL_PASSWORD",
  "STORAGE_ENCRYPTION_KEY", "STORAGE_ENCRYPTION_KEY_PREVIOUS",
];

// Checks services given as {name: {VAR: source}}; a source is any string that is equal for
// two services exactly when they get the same value. Returns error messages.
export function checkServices(services) {
  const errors = [];
  for (const [svc, vars] of Object.entries(REQUIRED_ENV)) {
    if (!services[svc]) {
      errors.push(`service ${svc}: missing`);
      continue;
    }
    for (const v of vars) {
      if (!(v in services[svc])) errors.push(`service ${svc}: ${v} is not set`);
    }
  }
  for (const v of SHARED_ENV) {
    const sources = new Map();
    for (const [svc, vars] of Object.entries(services)) {
      if (v in vars) sources.set(svc, vars[v]);
    }
    if (new Set(sources.values()).size > 1) {
      errors.push(`${v} differs between ${[...sources.keys()].join(", ")}: every service must share it`);
    }
  }
  return errors;
}

// `docker-compose config` output → {service: {VAR: value}}.
function composeServices(text) {
  const doc = parseYaml(text);
  const out = {};
  for (const [name, svc] of Object.entries(doc?.services ?? {})) {
    let env = svc.environment ?? {};
    if (Array.isArray(env)) {
      env = Object.fromEntries(env.map((kv) => [kv.split("=")[0], kv.slice(kv.indexOf("=") + 1)]));
    }
    out[name] = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, `value:${v ?? ""}`]));
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args[0] !== "--compose" || args.length !== 2) {
    console.error("usage: required-env.mjs --compose FILE|-");
    process.exit(2);
  }
  const services = composeServices(fs.readFileSync(args[1] === "-" ? 0 : args[1], "utf8"));
  const errors = checkServices(services);
  for (const e of errors) console.log(`FAIL compose: ${e}`);
  if (errors.length) process.exit(1);
  console.log(`ok   compose: every service has its environment (${Object.keys(REQUIRED_ENV).join(", ")}); shared secrets agree`);
}
