-- POST /api/v1/auth/register, a new email each request: wrk ... -s register.lua URL -- RUN_ID PASSWORD
-- Emails are r<RUN_ID>-<thread>-<counter>@example.com, so no two requests of any run collide.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local threads = 0
local counter = 0
local run_id, password

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  run_id, password = args[1], args[2]
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"email":"r%s-%d-%d@example.com","password":"%s"}', run_id, tid, counter, password)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
