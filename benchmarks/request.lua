-- One fixed request, repeated: wrk -s request.lua URL -- METHOD PATH BODY_FILE TOKEN EXPECT
-- BODY_FILE holds the exact JSON body sent (read once per thread), or "-";
-- TOKEN is sent as "Authorization: Bearer TOKEN", or "-" for none. Used for
-- the reads, login and refresh.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local req

function init(args)
   local method, path, headers, body = common_args(args)
   req = wrk.format(method, path, headers, body)
end

function request()
   return req
end
