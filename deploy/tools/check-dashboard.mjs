// Checks the Grafana dashboard deploy/grafana/omniroute.json against the metrics the services
// export: every metric a query names is registered in one of the sources below (histograms with
// their _bucket/_sum/_count series), every label a query filters or groups by is a label of
// that metric (or job, instance, le), every panel has a query on the dashboard's data source
// variable, panel ids are unique and no two panels overlap. With promtool (Debian package
// prometheus) the queries are also parsed as PromQL (`promtool check rules`).
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
let failures = 0;
const fail = (m) => {
  failures++;
  console.log(`FAIL ${m}`);
};

// Where the metrics come from, and which /metrics serves them. The internal services (router,
// translator, accounts, usage) serve theirs on the gRPC port + 1000 (common/cli.h).
const services = "router, translator, accounts, usage";
const sources = [
  ["services/edge/src/metrics.cc", "edge"],
  ["services/usage/src/grpc_usage.cc", "edge"], // the edge's usage client
  ["services/usage/src/usage_metrics.cc", "usage, edge"], // the edge appends the usage service's
  ["common/metrics.cc", services], // grpc_server_*, process_*
  ["common/cli.h", services], // omniroute_config_reloads_total
  ["services/router/src/router_metrics.cc", "router"],
  ["services/accounts/src/local_accounts.cc", "accounts"],
];

// The end of the C++ statement that starts at `from`: the first ';' outside string literals,
// parentheses and braces.
const statementEnd = (src, from) => {
  let depth = 0;
  for (let i = from; i < src.length; i++) {
    const c = src[i];
    if (c === '"') {
      for (i++; i < src.length && src[i] !== '"'; i++) if (src[i] === "\\") i++;
    } else if (c === "(" || c === "{") depth++;
    else if (c === ")" || c === "}") depth--;
    else if (c === ";" && depth <= 0) return i;
  }
  return src.length;
};
// Label names in `{"name", value}` pairs of a prometheus::Labels initializer.
const labelPairs = (text) => [...text.matchAll(/\{\s*"(\w+)"\s*,/g)].map((m) => m[1]);

// metric families: name -> {name, type, labels, services}
const families = new Map();
let found = 0; // families of the current source
const family = (name, type, where) => {
  found++;
  let f = families.get(name);
  if (!f) families.set(name, (f = { name, type, labels: new Set(), services: new Set() }));
  for (const s of where.split(", ")) f.services.add(s);
  return f;
};
for (const [rel, where] of sources) {
  const src = fs.readFileSync(path.join(repo, rel), "utf8");
  found = 0;
  // prometheus-cpp: [VAR = &]prometheus::BuildT().Name("n")...Register(r)[.Add({{"label", v}})];
  // then VAR->Add(...) / VAR.Add(...) with the labels, or with a prometheus::Labels variable.
  for (const m of src.matchAll(/prometheus::Build(Counter|Gauge|Histogram|Summary)\(\)/g)) {
    const stmt = src.slice(m.index, statementEnd(src, m.index));
    const name = /\.Name\(\s*"(\w+)"\s*\)/.exec(stmt)?.[1];
    if (!name) continue;
    const f = family(name, m[1].toLowerCase(), where);
    const reg = stmt.indexOf(".Register(");
    if (reg >= 0) for (const l of labelPairs(stmt.slice(reg))) f.labels.add(l);
    const v = /(\w+)\s*=\s*&?\s*$/.exec(src.slice(Math.max(0, m.index - 120), m.index))?.[1];
    if (!v) continue;
    // the edge's cached children: Child(VAR, {{"label", v}, ...}, ...)
    for (const a of src.matchAll(new RegExp(`\\bChild\\(\\s*${v}\\s*,`, "g"))) {
      for (const l of labelPairs(src.slice(a.index + a[0].length, statementEnd(src, a.index)))) f.labels.add(l);
    }
    for (const a of src.matchAll(new RegExp(`\\b${v}\\s*(?:->|\\.)\\s*Add\\(`, "g"))) {
      const args = src.slice(a.index + a[0].length, statementEnd(src, a.index));
      for (const l of labelPairs(args)) f.labels.add(l);
      const id = /^\s*(\w+)\s*[,)]/.exec(args)?.[1];
      if (!id) continue;
      // `labels` built before this Add: its initializer and later emplace/insert calls
      const decls = [...src.slice(0, a.index).matchAll(new RegExp(`\\b${id}\\s*(?:=\\s*)?\\{`, "g"))];
      const decl = decls.at(-1);
      if (!decl) continue;
      for (const l of labelPairs(src.slice(decl.index, statementEnd(src, decl.index)))) f.labels.add(l);
      const after = src.slice(decl.index, a.index);
      for (const e of after.matchAll(new RegExp(`\\b${id}\\s*\\.\\s*(?:emplace|insert|try_emplace)\\(\\s*\\{?\\s*"(\\w+)"`, "g"))) f.labels.add(e[1]);
    }
  }
  // a collector's families: Family("n", "help", prometheus::MetricType::T, ...)
  for (const m of src.matchAll(/\bFamily\(\s*"(\w+)"/g)) {
    const type = /MetricType::(\w+)/.exec(src.slice(m.index, statementEnd(src, m.index)))?.[1];
    if (type) family(m[1], type.toLowerCase(), where);
  }
  // hand-written text: "# TYPE n t" or a helper's ("n", "t", ...), samples "n{label=\"...\",label=\""
  for (const m of src.matchAll(/# TYPE (\w+) (counter|gauge|histogram|summary|untyped)\b/g)) family(m[1], m[2], where);
  for (const m of src.matchAll(/\(\s*"(\w+)"\s*,\s*"(counter|gauge|histogram|summary|untyped)"/g)) family(m[1], m[2], where);
  for (const m of src.matchAll(/"(\w+)\{(\w+)=\\"/g)) {
    const f = families.get(m[1]);
    if (!f) continue;
    f.labels.add(m[2]);
    const rest = src.slice(m.index + m[0].length, statementEnd(src, m.index));
    for (const l of rest.matchAll(/\\",\s*(\w+)=\\"/g)) f.labels.add(l[1]);
  }
  if (!found) fail(`found no metric family in ${rel}`);
}
const byName = new Map();
for (const f of families.values()) {
  byName.set(f.name, f);
  if (f.type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) byName.set(f.name + s, { ...f, labels: new Set([...f.labels, ...(s === "_bucket" ? ["le"] : [])]) });
}
if (families.size < 20) fail(`found only ${families.size} metric families in the sources`);

const dash = JSON.parse(fs.readFileSync(file, "utf8"));
if (!dash.uid || !dash.title) fail("dashboard needs uid and title");
const vars = dash.templating?.list ?? [];
const dsVar = vars.find((v) => v.type === "datasource");
if (!dsVar) fail("no data source variable");
for (const v of vars) {
  if (v.type === "query" && v.datasource?.uid !== `\${${dsVar?.name}}`) fail(`variable ${v.name}: data source is not \${${dsVar?.name}}`);
}
const exprs = [];
const ids = new Map();
const boxes = [];
const walk = (panels) => {
  for (const p of panels ?? []) {
    if (ids.has(p.id)) fail(`panel "${p.title}": id ${p.id} is also panel "${ids.get(p.id)}"'s`);
    ids.set(p.id, p.title);
    const g = p.gridPos ?? {};
    if (![g.x, g.y, g.w, g.h].every(Number.isInteger) || g.x < 0 || g.w < 1 || g.h < 1 || g.x + g.w > 24) {
      fail(`panel "${p.title}": gridPos ${JSON.stringify(p.gridPos)} is not within the 24 columns`);
    } else {
      for (const o of boxes) {
        if (g.x < o.g.x + o.g.w && o.g.x < g.x + g.w && g.y < o.g.y + o.g.h && o.g.y < g.y + g.h) fail(`panel "${p.title}" overlaps panel "${o.title}"`);
      }
      boxes.push({ g, title: p.title });
    }
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
for (const v of vars) if (v.type === "query") exprs.push({ panel: `variable ${v.name}`, expr: (v.definition ?? v.query?.query ?? "").replace(/^label_values\((.*),\s*\w+\)$/, "$1") });

const generic = new Set(["job", "instance"]);
// PromQL's keywords and aggregation operators (`sum by (x) (...)`: no parenthesis after sum)
const keywords = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "inf", "nan",
  "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"]);
for (const { panel, expr } of exprs) {
  // metric names: identifiers outside strings, selectors, ranges and label lists, not called
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "{}")
    .replace(/\[[^\]]*\]/g, "[]")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "$1()");
  const metrics = [...bare.matchAll(/(?<![\w$.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()/g)].map((m) => m[1]).filter((m) => !keywords.has(m.toLowerCase()));
  if (!metrics.length) fail(`${panel}: query names no metric`);
  const known = metrics.map((m) => byName.get(m));
  metrics.forEach((m, i) => known[i] || fail(`${panel}: ${m} is exported by no service`));
  const labels = new Set();
  for (const sel of expr.matchAll(/\{([^}]*)\}/g)) {
    for (const l of sel[1].matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) labels.add(l[1]);
  }
  for (const by of expr.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)) {
    for (const l of by[1].split(",")) if (l.trim()) labels.add(l.trim());
  }
  for (const l of labels) {
    if (generic.has(l)) continue;
    if (!known.some((f) => f?.labels.has(l))) fail(`${panel}: label ${l} is not a label of ${metrics.join(", ")}`);
  }
}

// PromQL syntax through promtool, with Grafana's variables replaced.
const promtool = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).stdout.trim();
if (promtool) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "omni-dash-"));
  const fill = (e) => e.replaceAll("$__rate_interval", "5m").replaceAll("$__range", "1h").replace(/\$\{?(\w+)\}?/g, ".*");
  const rules = { groups: [{ name: "dashboard", rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: fill(e.expr) })) }] };
  fs.writeFileSync(path.join(dir, "rules.json"), JSON.stringify(rules));
  const r = spawnSync(promtool, ["check", "rules", path.join(dir, "rules.json")], { encoding: "utf8" });
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) fail(`promtool check rules: ${(r.stdout + r.stderr).trim()}`);
  else console.log(`ok   ${exprs.length} queries parse as PromQL (promtool)`);
} else {
  console.log("skip PromQL syntax: promtool not installed (Debian package prometheus)");
}
if (process.env.DASHBOARD_METRICS) {
  for (const f of families.values()) console.log(`${f.name} ${f.type} {${[...f.labels].join(",")}} (${[...f.services].join(", ")})`);
}
if (!failures) {
  const used = new Set(exprs.flatMap((e) => [...e.expr.matchAll(/\b([a-z_]\w*)\b/g)].map((m) => byName.get(m[1])?.name).filter(Boolean)));
  console.log(`ok   ${path.relative(repo, file)}: ${boxes.length} panels and rows, ${exprs.length} queries on ${used.size} of the ${families.size} metric families the services export, with their labels`);
}
process.exit(failures ? 1 : 0);
