-- POST /api/v1/contacts: a new contact (with PII) for a random customer of BENCH_IDS.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

setup = common.setup
done = common.done

function init(_args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  customers = common.read_lines(os.getenv("BENCH_IDS"))
  headers = common.headers(true)
  serial = 0
  run = os.time() % 100000
end

function request()
  serial = serial + 1
  local body = string.format(
    '{"customer_id":"%s","name":"Bench Contact %d","title":"Buyer","phone":"+86 139%08d",' ..
    '"email":"bench.%d.%d.%d@example.com","address":"上海市%d号"}',
    customers[math.random(#customers)], serial, math.random(0, 99999999), run, tid or 0, serial,
    math.random(1, 999))
  return wrk.format("POST", "/api/v1/contacts", headers, body)
end
