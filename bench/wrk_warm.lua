-- Warms nanorec's cache for users 1..HOT_USERS (1000) before a measured run. Run with -t2:
-- thread 1 walks the odd users and thread 2 the even ones, in order, round and round, so a
-- short run covers every hot user.
local hot = tonumber(os.getenv("HOT_USERS") or "1000")
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  next_user = id or 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local u = next_user
  next_user = next_user + 2
  if next_user > hot then next_user = id or 1 end
  return wrk.format(nil, "/recommend", nil, string.format('{"user_id":%d,"k":10}', u))
end
