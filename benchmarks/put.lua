-- A real write on every request: wrk -s put.lua URL -- PUT PATH BODY_FILE TOKEN EXPECT
-- BODY_FILE holds a full ship as JSON with a `"crew": <number>` member; each
-- request sends it with a new crew (vary.lua), so every PUT changes the row.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
dofile(here .. "vary.lua")

local method, path, headers, template

function init(args)
   method, path, headers, template = common_args(args)
end

function request()
   return wrk.format(method, path, headers, next_body(template))
end
