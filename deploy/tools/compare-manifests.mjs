// Proves that two renderings hold the same Kubernetes objects: same set of
// (apiVersion, kind, namespace, name), and each pair deeply equal once parsed (key order,
// quoting and comments do not matter; values, types and list order do).
//
//   node deploy/tools/compare-manifests.mjs [--ignore-kind KIND]... [--ignore-label KEY]...
//        A.yaml B.yaml
//
// --ignore-kind drops objects of that kind from both sides (e.g. Namespace, which Helm
// leaves to --create-namespace); --ignore-label drops that metadata label from every object
// (e.g. helm.sh/chart). Exit 0 equal, 1 different, 2 usage error.
import fs from "node:fs";
import { parseAllDocuments } from "yaml";

const args = process.argv.slice(2);
const ignoreKinds = new Set();
const ignoreLabels = new Set();
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--ignore-kind") ignoreKinds.add(args[++i]);
  else if (args[i] === "--ignore-label") ignoreLabels.add(args[++i]);
  else files.push(args[i]);
}
if (files.length !== 2) {
  console.error("usage: compare-manifests.mjs [--ignore-kind K]... [--ignore-label L]... A B");
  process.exit(2);
}

function load(file) {
  const out = new Map();
  for (const doc of parseAllDocuments(fs.readFileSync(file, "utf8"))) {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0].message}`);
    const o = doc.toJS();
    if (o == null || ignoreKinds.has(o.kind)) continue;
    const labels = o.metadata?.labels;
    if (labels) {
      for (const l of ignoreLabels) delete labels[l];
      if (Object.keys(labels).length === 0) delete o.metadata.labels;
    }
    const key = `${o.apiVersion} ${o.kind} ${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
    if (out.has(key)) throw new Error(`${file}: ${key} twice`);
    out.set(key, o);
  }
  return out;
}

function diff(a, b, path, out) {
  if (out.length >= 20) return;
  const ta = Array.isArray(a) ? "array" : a === null ? "null" : typeof a;
  const tb = Array.isArray(b) ? "array" : b === null ? "null" : typeof b;
  if (ta !== tb) {
    out.push(`${path || "/"}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  } else if (ta === "array") {
    if (a.length !== b.length) out.push(`${path}: ${a.length} items vs ${b.length}`);
    for (let i = 0; i < Math.min(a.length, b.length); i++) diff(a[i], b[i], `${path}/${i}`, out);
  } else if (ta === "object") {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!(k in a)) out.push(`${path}/${k}: only in ${files[1]}: ${JSON.stringify(b[k])}`);
      else if (!(k in b)) out.push(`${path}/${k}: only in ${files[0]}: ${JSON.stringify(a[k])}`);
      else diff(a[k], b[k], `${path}/${k}`, out);
    }
  } else if (a !== b) {
    out.push(`${path}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  }
}

let A, B;
try {
  A = load(files[0]);
  B = load(files[1]);
} catch (e) {
  console.error(`compare-manifests: ${e.message}`);
  process.exit(2);
}
const problems = [];
for (const k of A.keys()) if (!B.has(k)) problems.push(`${k}: only in ${files[0]}`);
for (const k of B.keys()) if (!A.has(k)) problems.push(`${k}: only in ${files[1]}`);
for (const [k, a] of A) {
  if (!B.has(k)) continue;
  const d = [];
  diff(a, B.get(k), "", d);
  for (const x of d) problems.push(`${k}: ${x}`);
}
if (problems.length) {
  for (const p of problems) console.log(`FAIL ${p}`);
  process.exit(1);
}
console.log(`ok   ${A.size} objects identical`);
