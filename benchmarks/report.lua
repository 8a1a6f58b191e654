-- Shared by every bench script: at the end of a run wrk calls done() once,
-- and we print one machine-readable line for scripts/bench.py to parse
-- (latencies in microseconds, duration in microseconds).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH_JSON {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
      "\"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d, " ..
      "\"connect_errors\": %d, \"read_errors\": %d, \"write_errors\": %d, " ..
      "\"status_errors\": %d, \"timeouts\": %d}\n",
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
