-- Shared by the wrk scripts: environment, id files, headers and the machine-readable result line.
-- Environment: BENCH_TOKEN (bearer token), BENCH_IDS (file, one value per line), BENCH_PATH (path template,
-- "{id}" replaced by a random line), BENCH_THREADS (wrk -t, for partitioning ids between threads).

local common = {}

function common.read_lines(path)
  local lines = {}
  if path == nil or path == "" then return lines end
  for line in io.lines(path) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  return lines
end

function common.headers(with_body)
  local headers = { ["Accept"] = "application/json" }
  local token = os.getenv("BENCH_TOKEN")
  if token ~= nil and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  if with_body then headers["Content-Type"] = "application/json" end
  return headers
end

local next_tid = 0
function common.setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

function common.done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99)))
end

return common
