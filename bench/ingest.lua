-- wrk script for the ingestion benchmark: every request is a new 10-event batch (unique batch
-- id, so nothing is answered from de-duplication) from one of many simulated visitors (a
-- distinct X-Forwarded-For address; the collector runs with --trusted-proxy 127.0.0.1).
-- Optional: WAYMARK_RATE (requests/s over all connections) turns on a per-connection delay,
-- to measure latency at a fixed fraction of the peak rate.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(tid * 7919)
  rate = tonumber(os.getenv("WAYMARK_RATE") or "0")
  conns = tonumber(os.getenv("WAYMARK_CONNS") or "1")
end

function delay()
  if rate > 0 then
    return 1000 * conns / rate
  end
  return 0
end

function request()
  counter = counter + 1
  local now = os.time() * 1000
  local visitor = math.random(1, 50000)
  local ip = string.format("10.%d.%d.%d", visitor % 200, math.floor(visitor / 200) % 250, tid)
  local pv = string.format("pv%04d%06d", tid, counter % 1000000)
  local events = {}
  for i = 1, 10 do
    local path = "/products/" .. ((visitor + i) % 40)
    local ev
    if i % 3 == 0 then
      ev = string.format('{"type":"engagement","at":%d,"pv":"%s","url":"https://shop.example%s","scroll":%d,"engaged_ms":%d}', now - 1000 + i, pv, path, (i * 10) % 100, i * 1000)
    else
      ev = string.format('{"type":"pageview","at":%d,"pv":"%s","url":"https://shop.example%s","referrer":"https://www.google.com/"}', now - 1000 + i, pv, path)
    end
    events[i] = ev
  end
  local body = string.format('{"site":"shop","batch":"wrk%02d%013d","sent_at":%d,"events":[%s]}', tid, counter, now, table.concat(events, ","))
  return wrk.format("POST", "/v1/batch", {
    ["Content-Type"] = "application/json",
    ["Origin"] = "https://shop.example",
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ["X-Forwarded-For"] = ip,
  }, body)
end
