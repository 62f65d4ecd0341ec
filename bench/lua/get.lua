-- GET BENCH_PATH with "{id}" replaced by a random line of BENCH_IDS (single read, 360, search, list).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup
done = common.done

function init(_args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  lines = common.read_lines(os.getenv("BENCH_IDS"))
  template = os.getenv("BENCH_PATH")
  headers = common.headers(false)
  fixed = wrk.format("GET", template, headers)
end

function request()
  if #lines == 0 then return fixed end
  local path = template:gsub("{id}", lines[math.random(#lines)])
  return wrk.format("GET", path, headers)
end
