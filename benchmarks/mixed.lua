-- The read/write blend: wrk -s mixed.lua URL -- PUT WRITE_PATH BODY_FILE TOKEN EXPECT SHIP_COUNT
--   80% GET /api/ships/{random 1..SHIP_COUNT}
--   10% GET /api/ships
--   10% PUT WRITE_PATH with BODY_FILE and a new crew each time
--       (vary.lua), so every write changes the row
-- Each wrk thread seeds its generator with its own fixed number, so every
-- run (ours and the ceiling's) sends the same sequence.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
dofile(here .. "vary.lua")

local gets, list, method, path, headers, template
local ship_count

function init(args)
   method, path, headers, template = common_args(args)
   ship_count = tonumber(args[6])
   math.randomseed(1000 + (id or 0))
   gets = {}
   for i = 1, ship_count do
      gets[i] = wrk.format("GET", "/api/ships/" .. i)
   end
   list = wrk.format("GET", "/api/ships")
end

function request()
   local r = math.random(100)
   if r <= 80 then
      return gets[math.random(ship_count)]
   elseif r <= 90 then
      return list
   end
   return wrk.format(method, path, headers, next_body(template))
end
