-- Shared by put.lua and mixed.lua: a body that carries a new crew on every
-- call (thread id x 10^7 + a per-thread counter, so no two requests of a run
-- send the same), because an UPDATE with identical values writes nothing
-- and would make a PUT look cheaper than a real write.
local sent = 0
function next_body(template)
   sent = sent + 1
   local crew = (id or 0) * 10000000 + sent
   local body, n = template:gsub('"crew": *%d+', '"crew": ' .. crew, 1)
   assert(n == 1, "the body must have a \"crew\": <number> member")
   return body
end
