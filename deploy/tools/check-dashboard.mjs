// Checks the Grafana dashboard deploy/grafana/omniroute.json against the metrics the edge
// exports: every metric a query names is registered in services/edge/src/metrics.cc
// (histograms with their _bucket/_sum/_count series), every label a query filters or
// groups by is a label of that metric (or job, instance, le), and every panel has a query
// on the dashboard's data source variable. With promtool (Debian package prometheus) the
// queries are also parsed as PromQL (`promtool check rules`).
//
//   node deploy/tools/check-dashboard.mjs [DASHBOARD.json]
// Exit 0 valid, 1 invalid.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const file = process.argv[2] ?? path.join(repo, "deploy/grafana/omniroute.json");
const source = fs.readFileSync(path.join(repo, "services/edge/src/metrics.cc"), "utf8");
let failures = 0;
const fail = (m) => {
  failures++;
  console.log(`FAIL ${m}`);
};

// metric families of the edge: member -> {name, type, labels}
const families = new Map();
for (const m of source.matchAll(/(\w+_)\s*=\s*&prometheus::Build(\w+)\(\)\s*\.Name\("(\w+)"\)/g)) {
  families.set(m[1], { name: m[3], type: m[2].toLowerCase(), labels: new Set() });
}
for (const m of source.matchAll(/(\w+_)\s*->\s*Add\(([^;]*);/gs)) {
  const f = families.get(m[1]);
  if (f) for (const k of m[2].matchAll(/\{"(\w+)"/g)) f.labels.add(k[1]);
}
const byName = new Map();
for (const f of families.values()) {
  byName.set(f.name, f);
  if (f.type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) byName.set(f.name + s, { ...f, labels: new Set([...f.labels, ...(s === "_bucket" ? ["le"] : [])]) });
}
if (families.size < 5) fail(`found only ${families.size} metric families in metrics.cc`);

const dash = JSON.parse(fs.readFileSync(file, "utf8"));
if (!dash.uid || !dash.title) fail("dashboard needs uid and title");
const dsVar = (dash.templating?.list ?? []).find((v) => v.type === "datasource");
if (!dsVar) fail("no data source variable");
const exprs = [];
const walk = (panels) => {
  for (const p of panels ?? []) {
    if (p.type === "row") {
      walk(p.panels);
      continue;
    }
    if (!p.targets?.length) fail(`panel "${p.title}": no query`);
    if (p.datasource?.uid !== `\${${dsVar?.name}}`) fail(`panel "${p.title}": data source is not \${${dsVar?.name}}`);
    for (const t of p.targets ?? []) exprs.push({ panel: p.title, expr: t.expr });
  }
};
walk(dash.panels);

const generic = new Set(["job", "instance"]);
for (const { panel, expr } of exprs) {
  const metrics = [...expr.matchAll(/\b(omniroute_\w+)/g)].map((m) => m[1]);
  if (!metrics.length) fail(`panel "${panel}": query names no omniroute metric`);
  const known = metrics.map((m) => byName.get(m));
  metrics.forEach((m, i) => known[i] || fail(`panel "${panel}": ${m} is not exported by the edge`));
  const labels = new Set();
  for (const sel of expr.matchAll(/\{([^}]*)\}/g)) {
    for (const l of sel[1].matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) labels.add(l[1]);
  }
  for (const by of expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
    for (const l of by[1].split(",")) labels.add(l.trim());
  }
  for (const l of labels) {
    if (generic.has(l)) continue;
    if (!known.some((f) => f?.labels.has(l))) fail(`panel "${panel}": label ${l} is not a label of ${metrics.join(", ")}`);
  }
}

// PromQL syntax through promtool, with Grafana's variables replaced.
const promtool = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).stdout.trim();
if (promtool) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "omni-dash-"));
  const rules = { groups: [{ name: "dashboard", rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: e.expr.replaceAll("$__rate_interval", "5m").replaceAll("$__range", "1h").replaceAll("$job", ".*") })) }] };
  fs.writeFileSync(path.join(dir, "rules.json"), JSON.stringify(rules));
  const r = spawnSync(promtool, ["check", "rules", path.join(dir, "rules.json")], { encoding: "utf8" });
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) fail(`promtool check rules: ${(r.stdout + r.stderr).trim()}`);
  else console.log(`ok   ${exprs.length} queries parse as PromQL (promtool)`);
} else {
  console.log("skip PromQL syntax: promtool not installed (Debian package prometheus)");
}
if (!failures) console.log(`ok   ${path.relative(repo, file)}: ${exprs.length} queries use only the edge's metrics and labels (${[...families.values()].map((f) => f.name).join(", ")})`);
process.exit(failures ? 1 : 0);
