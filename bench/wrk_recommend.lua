-- wrk script for POST /recommend with the reference's mix: 70 % of requests for users
-- 1..1000 (mostly cache hits once warm), 30 % for users 1001..N_USERS (cold path), k = 10.
--   wrk -t2 -c16 -d30s -s bench/wrk_recommend.lua http://127.0.0.1:8000
-- Environment: N_USERS (20000), HOT_SHARE (0.7), LAT_OUT (file for the latency percentiles
-- written at the end, one "percentile latency_ms" per line, for the plot).
local n_users = tonumber(os.getenv("N_USERS") or "20000")
local hot_share = tonumber(os.getenv("HOT_SHARE") or "0.7")
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local u
  if math.random() < hot_share then
    u = math.random(1, 1000)
  else
    u = math.random(1001, n_users)
  end
  return wrk.format(nil, "/recommend", nil, string.format('{"user_id":%d,"k":10}', u))
end

function done(summary, latency, requests)
  local out = os.getenv("LAT_OUT")
  if out then
    local f = io.open(out, "w")
    local ps = {1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9}
    for _, p in ipairs(ps) do
      f:write(string.format("%g %.3f\n", p, latency:percentile(p) / 1000.0))
    end
    f:close()
  end
  io.write(string.format("errors: connect %d, read %d, write %d, status %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
