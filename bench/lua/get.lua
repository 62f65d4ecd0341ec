-- GET BENCH_PATH with "{id}" replaced by a random line of BENCH_IDS and "{1}", "{2}" ... by that line's
-- whitespace-separated columns (single read, 360, search, list, audit queries). Every request is built once, in
-- init, so the script costs the same whatever the template.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup
done = common.done

local function fill(template, line)
  local columns = {}
  for column in line:gmatch("%S+") do columns[#columns + 1] = column end
  local path = template:gsub("{id}", function() return line end)
  return (path:gsub("{(%d)}", function(n) return columns[tonumber(n)] or "" end))
end

function init(_args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  local template = os.getenv("BENCH_PATH")
  local headers = common.headers(false)
  requests = {}
  for _, line in ipairs(common.read_lines(os.getenv("BENCH_IDS"))) do
    requests[#requests + 1] = wrk.format("GET", fill(template, line), headers)
  end
  if #requests == 0 then requests[1] = wrk.format("GET", template, headers) end
end

function request()
  return requests[math.random(#requests)]
end
