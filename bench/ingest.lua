-- wrk script: POST the same signed GitHub payload with a unique X-GitHub-Delivery each time.
-- BODY_FILE and SIGNATURE come from the environment (set by bench/ingest.py).
local body_file = os.getenv("BODY_FILE")
local f = assert(io.open(body_file, "rb"))
local body = f:read("*a")
f:close()
local signature = os.getenv("SIGNATURE")
local run = os.getenv("RUN_ID") or "run"
local counter = 0

request = function()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "pull_request",
    ["X-GitHub-Delivery"] = run .. "-" .. counter,
    ["X-Hub-Signature-256"] = signature,
    ["User-Agent"] = "GitHub-Hookshot/bench",
  }
  return wrk.format("POST", "/webhooks/github", headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
