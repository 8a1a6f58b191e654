-- The read/write blend: wrk -s mixed.lua URL -- PUT WRITE_PATH BODY_FILE TOKEN EXPECT SHIP_COUNT
--   80% GET /api/ships/{random 1..SHIP_COUNT}
--   10% GET /api/ships
--   10% PUT WRITE_PATH with BODY_FILE (an idempotent replace: the
--       stored ship stays the same bytes, so the ceiling's canned answers
--       stay identical to ours for the whole run)
-- Each wrk thread seeds its generator with its own fixed number, so every
-- run (ours and the ceiling's) sends the same sequence.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local gets, list, put
local ship_count

function init(args)
   local method, path, headers, body = common_args(args)
   ship_count = tonumber(args[6])
   math.randomseed(1000 + (id or 0))
   gets = {}
   for i = 1, ship_count do
      gets[i] = wrk.format("GET", "/api/ships/" .. i)
   end
   list = wrk.format("GET", "/api/ships")
   put = wrk.format(method, path, headers, body)
end

function request()
   local r = math.random(100)
   if r <= 80 then
      return gets[math.random(ship_count)]
   elseif r <= 90 then
      return list
   end
   return put
end
