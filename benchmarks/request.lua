-- One fixed request, repeated: wrk -s request.lua URL -- METHOD PATH [BODY_FILE|-] [TOKEN]
-- BODY_FILE holds the exact JSON body sent (read once per thread); TOKEN is
-- sent as "Authorization: Bearer TOKEN". Used for the update, login and
-- refresh scenarios.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local req

local function slurp(path)
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   return data
end

function init(args)
   local method, path, body_file, token = args[1], args[2], args[3], args[4]
   local headers = {}
   local body = nil
   if body_file and body_file ~= "-" and body_file ~= "" then
      body = slurp(body_file)
      headers["Content-Type"] = "application/json"
   end
   if token and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   req = wrk.format(method, path, headers, body)
end

function request()
   return req
end
