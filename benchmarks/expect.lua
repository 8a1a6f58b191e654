-- request.lua, and every answer's status checked against EXPECT:
-- wrk -s expect.lua URL -- METHOD PATH BODY_FILE TOKEN EXPECT
-- For a scenario whose right answer is not a 2xx (session_cost: auth, then
-- a 400). Each thread counts the answers of any other status in
-- `unexpected`, which report.lua's done() adds up. (Defining response()
-- makes wrk hand every answer to Lua: the same cost on every target.)
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "request.lua")

local expected
unexpected = 0

local init_request = init
function init(args)
   init_request(args)
   expected = tonumber(args[5])
end

function response(status, headers, body)
   if status ~= expected then
      unexpected = unexpected + 1
   end
end
