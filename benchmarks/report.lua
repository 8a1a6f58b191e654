-- Shared by every bench script. setup() numbers wrk's threads (each gets a
-- global `id`, 1..N) and keeps them, so that at the end done() can add up
-- what each thread counted; done() prints one machine-readable line for
-- scripts/bench to parse (latencies and duration in microseconds).
-- `unexpected` counts answers whose status was not the one expected
-- (expect.lua); wrk's own status_errors counts every answer >= 400.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function slurp(path)
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   return data
end

-- The arguments every script takes: METHOD PATH BODY_FILE TOKEN EXPECT ...
-- ("-" for no body or no token). Returns them with the headers to send.
function common_args(args)
   local method, path, body_file, token = args[1], args[2], args[3], args[4]
   local headers, body = {}, nil
   if body_file and body_file ~= "-" and body_file ~= "" then
      body = slurp(body_file)
      headers["Content-Type"] = "application/json"
   end
   if token and token ~= "-" and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   return method, path, headers, body, tonumber(args[5] or "0") or 0
end

function done(summary, latency, requests)
   local unexpected = 0
   for _, thread in ipairs(threads) do
      unexpected = unexpected + (tonumber(thread:get("unexpected")) or 0)
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH_JSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
      "\"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d, " ..
      "\"connect_errors\": %d, \"read_errors\": %d, \"write_errors\": %d, " ..
      "\"status_errors\": %d, \"timeouts\": %d, \"unexpected\": %d}\n",
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout, unexpected))
end
