-- PATCH /api/v1/contacts/{id} with If-Match. BENCH_IDS lines are "id version" (read from the database just
-- before the run). Each thread takes its own share of the ids round-robin, so no two connections change the
-- same contact at once; the version sent next time comes from the answer (its "version"), so a request that
-- wrk generates but never sends cannot put the scripts's idea of the version out of step.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup
done = common.done

function init(_args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  ids, versions = {}, {}
  for i, line in ipairs(common.read_lines(os.getenv("BENCH_IDS"))) do
    if (i - 1) % threads == (tid or 0) then
      local id, version = line:match("^(%S+)%s+(%d+)$")
      ids[#ids + 1] = id
      versions[id] = tonumber(version)
    end
  end
  headers = common.headers(true)
  position = 0
end

function request()
  position = position % #ids + 1
  local id = ids[position]
  headers["If-Match"] = '"' .. versions[id] .. '"'
  local body = string.format('{"title":"Buyer %d","phone":"+86 138%08d"}', math.random(1, 999),
    math.random(0, 99999999))
  return wrk.format("PATCH", "/api/v1/contacts/" .. id, headers, body)
end

function response(status, _headers, body)
  if status == 200 then
    local id = body:match('"id":"([%x%-]+)"')
    local version = body:match('"version":(%d+)')
    if id and version and versions[id] then versions[id] = tonumber(version) end
  end
end
