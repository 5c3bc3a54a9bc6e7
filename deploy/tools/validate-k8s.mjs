// Validates rendered Kubernetes manifests offline.
//
//   node deploy/tools/validate-k8s.mjs [--secrets FILE] [--name LABEL] FILE|- ...
//
// Every object (multi-document YAML; "-" reads stdin) is checked
//   1. against its Kubernetes JSON schema, with the npm package kubernetes-models (the
//      Prometheus Operator's CRDs with @kubernetes-models/prometheus-operator); an object
//      of a kind no model covers is an error;
//   2. for unknown fields (the schemas allow any extra field; a typo like `replica:` would
//      pass them): a field the schema validator never looked at is reported;
//   3. for consistency within the set: selectors match pod templates, Services and probes
//      name existing container ports, HPA/PDB/NetworkPolicy/Ingress/ServiceMonitor refer
//      to existing objects, OMNIROUTE_*_ADDR point at a Service port, every ConfigMap a pod
//      mounts is in the set, every Secret key a pod reads is in --secrets (the example
//      Secret), the gateway's pods run as non-root with a read-only root file system, the
//      edge's termination grace period covers preStop + drain_timeout_ms + flush, each
//      service gets the environment it needs (required-env.mjs) with the shared secrets
//      from one source, and the NetworkPolicies admit every OMNIROUTE_*_ADDR connection.
// Exit status: 0 valid, 1 invalid, 2 usage error.
import fs from "node:fs";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { checkServices } from "./required-env.mjs";

const args = process.argv.slice(2);
let secretsFile = null;
let name = null;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--secrets") secretsFile = args[++i];
  else if (args[i] === "--name") name = args[++i];
  else files.push(args[i]);
}
if (files.length === 0) {
  console.error("usage: validate-k8s.mjs [--secrets FILE] [--name LABEL] FILE|- ...");
  process.exit(2);
}

function readDocs(file) {
  const text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
  const out = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0].message}`);
    const obj = doc.toJS();
    if (obj != null) out.push(obj);
  }
  return out;
}

const errors = [];
const err = (obj, msg) =>
  errors.push(`${obj ? `${obj.kind}/${obj.metadata?.name ?? "?"}` : "-"}: ${msg}`);

// ---------------------------------------------------------------- models
const crdModules = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};
async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const spec = crdModules[group]
    ? `${crdModules[group]}/${group}/${version}/${kind}`
    : group
      ? `kubernetes-models/${group}/${version}/${kind}`
      : `kubernetes-models/${version}/${kind}`;
  try {
    const mod = await import(spec);
    return mod[kind];
  } catch {
    return null;
  }
}

// Wraps `value` so that reading a property marks it as known; returns [proxy, report].
// An object the validator looked into by name (a typed object) reports the keys it never
// read. Maps (labels, data, ...) are enumerated by the validator: their keys count as read.
function tracked(value) {
  const nodes = [];
  function wrap(v, path) {
    if (v === null || typeof v !== "object") return v;
    const node = { path, v, read: new Set(), named: false, enumerated: false };
    nodes.push(node);
    const cache = new Map();
    return new Proxy(v, {
      get(target, key, receiver) {
        if (typeof key === "string") {
          if (!Array.isArray(target) || key !== "length") {
            node.read.add(key);
            if (!Array.isArray(target)) node.named = true;
          }
          if (Object.prototype.hasOwnProperty.call(target, key)) {
            if (!cache.has(key)) cache.set(key, wrap(target[key], `${path}/${key}`));
            return cache.get(key);
          }
        }
        return Reflect.get(target, key, receiver);
      },
      ownKeys(target) {
        node.enumerated = true;
        return Reflect.ownKeys(target);
      },
      has(target, key) {
        if (typeof key === "string") node.read.add(key);
        return Reflect.has(target, key);
      },
    });
  }
  const proxy = wrap(value, "");
  return [
    proxy,
    () => {
      const unknown = [];
      for (const n of nodes) {
        if (Array.isArray(n.v) || n.enumerated || !n.named) continue;
        for (const k of Object.keys(n.v)) {
          if (!n.read.has(k)) unknown.push(`${n.path}/${k}`);
        }
      }
      return unknown;
    },
  ];
}

// ---------------------------------------------------------------- helpers
const podSpecOf = (o) =>
  ["Deployment", "StatefulSet", "DaemonSet", "Job"].includes(o.kind) ? o.spec?.template : null;
const matches = (selector, labels) =>
  selector &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v) &&
  Object.keys(selector).length > 0;
function matchesSelector(sel, labels) {
  if (!sel) return false;
  const ml = sel.matchLabels ?? {};
  if (!Object.entries(ml).every(([k, v]) => labels?.[k] === v)) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = labels && e.key in labels;
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return Object.keys(ml).length > 0 || (sel.matchExpressions ?? []).length > 0;
}
const containerPorts = (tpl) =>
  (tpl?.spec?.containers ?? []).flatMap((c) => c.ports ?? []);
const hasPort = (tpl, port) =>
  containerPorts(tpl).some((p) => (typeof port === "string" ? p.name === port : p.containerPort === port));

// ---------------------------------------------------------------- checks
const objects = [];
for (const f of files) {
  try {
    objects.push(...readDocs(f));
  } catch (e) {
    console.error(`validate-k8s: ${e.message}`);
    process.exit(1);
  }
}
let secretKeys = null;
if (secretsFile) {
  secretKeys = new Map();
  for (const s of readDocs(secretsFile)) {
    const keys = new Set([...Object.keys(s.data ?? {}), ...Object.keys(s.stringData ?? {})]);
    secretKeys.set(s.metadata.name, keys);
  }
}

const seen = new Set();
for (const o of objects) {
  if (!o.apiVersion || !o.kind || !o.metadata?.name) {
    err(o, "apiVersion, kind and metadata.name are required");
    continue;
  }
  const id = `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`;
  if (seen.has(id)) err(o, "defined twice");
  seen.add(id);
  const Model = await modelFor(o.apiVersion, o.kind);
  if (!Model) {
    err(o, `no schema for ${o.apiVersion} ${o.kind} in kubernetes-models`);
    continue;
  }
  const copy = structuredClone(o);
  // Go's base64 decoder (the API server's) skips line breaks; kustomize wraps long values.
  if (o.kind === "Secret" && copy.data) {
    for (const k of Object.keys(copy.data)) copy.data[k] = String(copy.data[k]).replace(/[\r\n]/g, "");
  }
  const [proxy, unknownFields] = tracked(copy);
  try {
    Model.prototype.validate.call(proxy);
  } catch (e) {
    err(o, `schema: ${e.message}`);
    continue;
  }
  for (const path of unknownFields()) err(o, `unknown field ${path}`);
}

const namespaces = new Set(
  objects.filter((o) => o.kind !== "Namespace").map((o) => o.metadata?.namespace ?? "")
);
if (namespaces.size > 1) err(null, `objects in several namespaces: ${[...namespaces].join(", ")}`);

const workloads = objects.filter(podSpecOf);
const services = objects.filter((o) => o.kind === "Service");
const configMaps = new Set(objects.filter((o) => o.kind === "ConfigMap").map((o) => o.metadata.name));
const byKindName = (kind, n) => objects.find((o) => o.kind === kind && o.metadata.name === n);

for (const w of workloads) {
  const tpl = w.spec.template;
  const labels = tpl.metadata?.labels ?? {};
  if (!matches(w.spec.selector?.matchLabels, labels)) err(w, "selector does not match the pod template's labels");
  const gateway = labels["app.kubernetes.io/name"] === "omniroute";
  const pod = tpl.spec;
  if (gateway) {
    const sc = pod.securityContext ?? {};
    if (sc.runAsNonRoot !== true || !(sc.runAsUser > 0)) err(w, "the pod must run as a non-root user");
    if (pod.automountServiceAccountToken !== false) err(w, "automountServiceAccountToken must be false");
  }
  for (const v of pod.volumes ?? []) {
    if (v.configMap && !v.configMap.optional && !configMaps.has(v.configMap.name)) {
      err(w, `volume ${v.name}: ConfigMap ${v.configMap.name} is not in the set`);
    }
  }
  for (const c of pod.containers) {
    if (!/[:@]/.test(c.image.split("/").pop())) err(w, `container ${c.name}: image ${c.image} has no tag`);
    for (const kind of ["requests", "limits"]) {
      for (const r of ["cpu", "memory"]) {
        if (!c.resources?.[kind]?.[r]) err(w, `container ${c.name}: resources.${kind}.${r} missing`);
      }
    }
    for (const probe of ["readinessProbe", "livenessProbe"]) {
      const p = c[probe];
      if (!p) {
        err(w, `container ${c.name}: no ${probe}`);
        continue;
      }
      const port = p.httpGet?.port ?? p.tcpSocket?.port ?? p.grpc?.port;
      if (port !== undefined && !hasPort(tpl, port)) err(w, `container ${c.name}: ${probe} port ${port} is not a container port`);
    }
    if (gateway) {
      const sc = c.securityContext ?? {};
      if (sc.allowPrivilegeEscalation !== false || sc.readOnlyRootFilesystem !== true ||
          !(sc.capabilities?.drop ?? []).includes("ALL")) {
        err(w, `container ${c.name}: needs allowPrivilegeEscalation=false, readOnlyRootFilesystem=true, drop ALL`);
      }
    }
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref && secretKeys && !ref.optional) {
        if (!secretKeys.get(ref.name)?.has(ref.key)) err(w, `env ${e.name}: Secret ${ref.name} key ${ref.key} is not in ${secretsFile}`);
      }
      const cref = e.valueFrom?.configMapKeyRef;
      if (cref && !cref.optional && !configMaps.has(cref.name)) err(w, `env ${e.name}: ConfigMap ${cref.name} is not in the set`);
      if (/^OMNIROUTE_[A-Z]+_ADDR$/.test(e.name)) {
        const [host, port] = (e.value ?? "").split(":");
        const svc = byKindName("Service", host);
        if (!svc || !svc.spec.ports.some((p) => p.port === Number(port))) {
          err(w, `env ${e.name}=${e.value}: no Service ${host} with port ${port}`);
        }
      }
    }
    for (const ef of c.envFrom ?? []) {
      const ref = ef.secretRef;
      if (ref && secretKeys && !ref.optional && !secretKeys.has(ref.name)) err(w, `envFrom: Secret ${ref.name} is not in ${secretsFile}`);
    }
  }
  // The edge: SIGTERM comes after preStop; the drain and the usage flush (10 s) must end
  // before the grace period does.
  if (labels["app.kubernetes.io/component"] === "edge" && gateway) {
    const c = pod.containers[0];
    const cmd = c.lifecycle?.preStop?.exec?.command ?? [];
    const sleep = cmd[0] === "sleep" ? Number(cmd[1]) : c.lifecycle?.preStop?.sleep?.seconds ?? 0;
    let drainMs = 30000;
    const cmName = (pod.volumes ?? []).find((v) => v.configMap)?.configMap?.name;
    const cm = cmName && byKindName("ConfigMap", cmName);
    const text = cm?.data?.["omniroute.yaml"];
    if (text) drainMs = parseYaml(text)?.server?.drain_timeout_ms ?? drainMs;
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    if (!(sleep > 0)) err(w, "the edge needs a preStop sleep (endpoints are removed while it still serves)");
    if (!(grace > sleep + drainMs / 1000 + 10)) {
      err(w, `terminationGracePeriodSeconds ${grace} <= preStop ${sleep} s + drain_timeout_ms ${drainMs / 1000} s + 10 s usage flush`);
    }
  }
}

const podsMatching = (sel, expr = false) =>
  workloads.filter((w) => (expr ? matchesSelector(sel, w.spec.template.metadata?.labels) : matches(sel, w.spec.template.metadata?.labels)));

for (const s of services) {
  const pods = podsMatching(s.spec.selector);
  if (pods.length === 0) {
    err(s, "selector matches no pod template");
    continue;
  }
  for (const p of s.spec.ports) {
    const target = p.targetPort ?? p.port;
    for (const w of pods) if (!hasPort(w.spec.template, target)) err(s, `targetPort ${target} is not a port of ${w.metadata.name}`);
  }
}
for (const o of objects) {
  if (o.kind === "HorizontalPodAutoscaler") {
    const t = o.spec.scaleTargetRef;
    if (!byKindName(t.kind, t.name)) err(o, `scaleTargetRef ${t.kind}/${t.name} is not in the set`);
    const w = byKindName(t.kind, t.name);
    if (w && o.spec.minReplicas < 2) err(o, "minReplicas below 2");
    if (w && o.spec.metrics?.some((m) => m.resource?.name === "cpu") &&
        !w.spec.template.spec.containers.every((c) => c.resources?.requests?.cpu)) {
      err(o, "CPU utilization needs CPU requests on every container");
    }
  }
  if (o.kind === "PodDisruptionBudget" && podsMatching(o.spec.selector, true).length === 0) err(o, "selector matches no pod template");
  if (o.kind === "NetworkPolicy") {
    const pods = o.spec.podSelector && Object.keys(o.spec.podSelector).length ? podsMatching(o.spec.podSelector, true) : workloads;
    if (pods.length === 0) err(o, "podSelector matches no pod template");
    for (const rule of o.spec.ingress ?? []) {
      for (const from of rule.from ?? []) {
        if (from.podSelector && podsMatching(from.podSelector, true).length === 0) err(o, "a from.podSelector matches no pod template");
      }
      for (const p of rule.ports ?? []) {
        if (!pods.some((w) => hasPort(w.spec.template, p.port))) err(o, `port ${p.port} is no port of the selected pods`);
      }
    }
  }
  if (o.kind === "Ingress") {
    for (const r of o.spec.rules ?? []) {
      for (const p of r.http?.paths ?? []) {
        const b = p.backend.service;
        const svc = byKindName("Service", b.name);
        if (!svc) err(o, `backend Service ${b.name} is not in the set`);
        else if (!svc.spec.ports.some((sp) => (b.port.name ? sp.name === b.port.name : sp.port === b.port.number))) {
          err(o, `backend port ${JSON.stringify(b.port)} is not a port of Service ${b.name}`);
        }
      }
    }
  }
  if (o.kind === "ServiceMonitor") {
    const svcs = services.filter((s) => matchesSelector(o.spec.selector, s.metadata.labels));
    if (svcs.length === 0) err(o, "selector matches no Service");
    for (const ep of o.spec.endpoints ?? []) {
      if (!svcs.some((s) => s.spec.ports.some((p) => p.name === ep.port))) err(o, `endpoint port ${ep.port} is not a named port of the selected Services`);
    }
  }
}

// The environment of each service (required-env.mjs): what a service needs, and shared
// secrets from the same Secret key (or the same literal) everywhere.
const envOf = {};
for (const w of workloads) {
  const labels = w.spec.template.metadata?.labels ?? {};
  const component = labels["app.kubernetes.io/component"];
  if (labels["app.kubernetes.io/name"] !== "omniroute" || !component) continue;
  const vars = {};
  for (const c of w.spec.template.spec.containers) {
    for (const e of c.env ?? []) {
      const s = e.valueFrom?.secretKeyRef;
      const m = e.valueFrom?.configMapKeyRef;
      vars[e.name] = s ? `secret:${s.name}/${s.key}` : m ? `configmap:${m.name}/${m.key}` : `value:${e.value ?? ""}`;
    }
  }
  envOf[component] = vars;
}
if (Object.keys(envOf).length > 0) {
  for (const e of checkServices(envOf)) err(null, e);
}

// NetworkPolicies: the pods a workload calls through OMNIROUTE_*_ADDR admit it on that port.
const policies = objects.filter((o) => o.kind === "NetworkPolicy" && (o.spec.policyTypes ?? ["Ingress"]).includes("Ingress"));
const selectsPod = (p, labels) =>
  !p.spec.podSelector || Object.keys(p.spec.podSelector).length === 0 || matchesSelector(p.spec.podSelector, labels);
for (const w of workloads) {
  const from = w.spec.template.metadata?.labels ?? {};
  for (const c of w.spec.template.spec.containers) {
    for (const e of c.env ?? []) {
      if (!/^OMNIROUTE_[A-Z]+_ADDR$/.test(e.name)) continue;
      const [host, port] = (e.value ?? "").split(":");
      const svc = byKindName("Service", host);
      const sp = svc?.spec.ports.find((p) => p.port === Number(port));
      if (!sp) continue; // reported above
      for (const target of podsMatching(svc.spec.selector)) {
        const to = target.spec.template.metadata?.labels ?? {};
        const applying = policies.filter((p) => selectsPod(p, to));
        if (applying.length === 0) continue;
        const tport = sp.targetPort ?? sp.port;
        const cp = containerPorts(target.spec.template).find((p) => (typeof tport === "string" ? p.name === tport : p.containerPort === tport));
        const admitted = applying.some((p) => (p.spec.ingress ?? []).some((rule) => {
          const portOk = !rule.ports || rule.ports.some((rp) => rp.port === cp?.containerPort || (cp?.name && rp.port === cp.name));
          // a pod selector of this namespace: empty (every pod) or one matching the caller
          const fromOk = !rule.from || rule.from.some((f) => f.podSelector && !f.namespaceSelector &&
            (Object.keys(f.podSelector).length === 0 || matchesSelector(f.podSelector, from)));
          return portOk && fromOk;
        }));
        if (!admitted) err(w, `env ${e.name}=${e.value}: no NetworkPolicy admits it to ${target.metadata.name} port ${cp?.containerPort ?? tport}`);
      }
    }
  }
}

// Replicas of the gateway: at least 2 for the edge and the router, from the Deployment or
// from the HPA that targets it; never both (apply would reset the HPA's count).
for (const w of workloads) {
  const labels = w.spec.template.metadata?.labels ?? {};
  if (labels["app.kubernetes.io/name"] !== "omniroute") continue;
  const hpa = objects.find((o) => o.kind === "HorizontalPodAutoscaler" &&
    o.spec.scaleTargetRef.kind === w.kind && o.spec.scaleTargetRef.name === w.metadata.name);
  if (hpa && w.spec.replicas !== undefined) err(w, `sets replicas although HorizontalPodAutoscaler/${hpa.metadata.name} scales it`);
  const min = hpa ? hpa.spec.minReplicas ?? 1 : w.spec.replicas ?? 1;
  if (["edge", "router"].includes(labels["app.kubernetes.io/component"]) && min < 2) err(w, `runs ${min} replica(s); it needs at least 2`);
}

const label = name ? `${name}: ` : "";
if (errors.length) {
  for (const e of errors) console.log(`FAIL ${label}${e}`);
  process.exit(1);
}
const kinds = {};
for (const o of objects) kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
console.log(`ok   ${label}${objects.length} objects valid (${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ")})`);
