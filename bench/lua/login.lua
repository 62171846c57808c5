-- POST /api/v1/auth/login with one account's correct credentials: wrk ... -s login.lua URL -- EMAIL PASSWORD
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local req

function init(args)
  local body = string.format('{"email":"%s","password":"%s"}', args[1], args[2])
  req = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

function request()
  return req
end
