-- wrk script for bench/: POSTs a fixed JSON body and, when done, prints one line
--   BENCH_JSON {...}
-- with the counts and latency percentiles (microseconds), read by bench/lib/wrk.mjs.
-- Environment: BENCH_BODY_FILE (the request body), BENCH_API_KEY (sent as a Bearer token
-- when set). No response() callback on purpose: it would make wrk hand every response to
-- Lua and slow the load generator down. Statuses >= 400 are counted by wrk as
-- errors.status; the driver checks every target's answer shape before loading it.

local body_file = os.getenv("BENCH_BODY_FILE")
assert(body_file, "BENCH_BODY_FILE is not set")
local f = assert(io.open(body_file, "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end

function done(summary, latency, requests)
  local e = summary.errors
  local pct = {}
  for _, q in ipairs({ 50, 75, 90, 99, 99.9 }) do
    pct[#pct + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p":{%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max, table.concat(pct, ",")))
end
