-- wrk script: bench/form_post.lua's requests at a steady rate (wrk has no rate option).
-- Usage: wrk -t1 -cC ... -s bench/form_post_paced.lua URL -- RATE C
-- Each connection waits C/RATE seconds before each request, so the connections together
-- offer about RATE requests/s while answers come back well within that pause.
dofile("bench/form_post.lua")

local pause_ms = 0

init = function(args)
  local rate = tonumber(args[1] or "0")
  local connections = tonumber(args[2] or "16")
  if rate and rate > 0 then
    pause_ms = math.floor(connections * 1000 / rate)
  end
end

delay = function()
  return pause_ms
end
