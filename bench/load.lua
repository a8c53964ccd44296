-- wrk script of `make bench`. The harness prepends:
--   bench_method = "POST"; bench_body = "<json>" or nil
--   bench_items = { {"<path>", "<token>"}, ... }   -- requests cycle through them
-- Every response is checked: non-2xx answers are counted by status code. done() prints one line,
-- "BENCH-RESULT {json}", with exact percentiles (microseconds) from wrk's latency histogram.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  requests_prepared = {}
  for i, item in ipairs(bench_items) do
    local headers = { ["Authorization"] = "Bearer " .. item[2] }
    if bench_body ~= nil then headers["Content-Type"] = "application/json" end
    requests_prepared[i] = wrk.format(bench_method, item[1], headers, bench_body)
  end
  position = thread_number * 7
  non2xx = 0
  codes = {}
end

function request()
  position = position + 1
  return requests_prepared[(position % #requests_prepared) + 1]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local key = tostring(status)
    codes[key] = (codes[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad, merged = 0, {}
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    for code, count in pairs(thread:get("codes")) do
      merged[code] = (merged[code] or 0) + count
    end
  end
  local parts = {}
  for code, count in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p95_us": %.0f, "p99_us": %.0f, ' ..
    '"max_us": %.0f, "non2xx": %d, "codes": {%s}, "socket_errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, bad, table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout))
end
