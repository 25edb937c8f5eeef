-- wrk script of `make bench`: POSTs JSON bodies read from a file (one body per line), in turn, so that the
-- servers see many different tweets instead of one cached text. Usage:
--
--   wrk -t1 -c16 -d15s --latency -s benchmarks/bodies.lua http://127.0.0.1:8000/v1/predict -- bodies.jsonl
--
-- At the end it writes one `BENCH_JSON {...}` line with exact percentiles (wrk's --latency table has no p95),
-- which benchmarks/wrk.py reads.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local bodies = {}
local position = 0
local threads = 0

function setup(thread)
  -- Each thread starts elsewhere in the file, so that threads don't send the same tweets in step.
  thread:set("start", threads * 7919)
  threads = threads + 1
end

function init(args)
  local path = args[1]
  local file = assert(io.open(path, "r"), "cannot open the bodies file " .. tostring(path))
  for line in file:lines() do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
  file:close()
  assert(#bodies > 0, "no request body in " .. path)
  position = (start or 0) % #bodies
end

function request()
  position = position % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[position])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %.1f, "p90": %.1f, "p95": %.1f, "p99": %.1f, "max": %.1f, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
