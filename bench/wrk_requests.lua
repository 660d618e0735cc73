-- wrk script of bench/wrk.py: send the prepared raw requests of the file named by WRK_REQUESTS, in order,
-- each once (then from the start again, which bench/wrk.py reports), and count the answers by status.
-- File format: for each request, its length in bytes, a newline, then the request's exact bytes.
local requests, sent = {}, 0
counts = {}  -- answers by status: a global, so that done() can read it through thread:get()

init = function(args)
  local file = assert(io.open(os.getenv("WRK_REQUESTS"), "rb"))
  local data = file:read("*a")
  file:close()
  local pos = 1
  while pos <= #data do
    local newline = string.find(data, "\n", pos, true)
    local length = tonumber(string.sub(data, pos, newline - 1))
    requests[#requests + 1] = string.sub(data, newline + 1, newline + length)
    pos = newline + length + 1
  end
end

request = function()
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

local threads = {}
setup = function(thread) threads[#threads + 1] = thread end

done = function(summary, latency, requests_)
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("counts")) do io.write(string.format("STATUS %d %d\n", code, n)) end
  end
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
