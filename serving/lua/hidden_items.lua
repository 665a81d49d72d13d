-- Which candidates must not be shown: unavailable items and, for a user, items they already
-- interacted with. The one definition of that filter (score_candidates.lua and
-- top_of_ranking.lua use it).

-- Membership tests against a set that is smaller than the candidate list are cheaper as one
-- read of the whole set; else one batched test (SMISMEMBER / ZMSCORE, Redis 6.2+) per 4,000
-- candidates (unpack() has a limit on its arguments).
local function membership(size, read_all, test_many)
  return function(candidates)
    local found = {}
    if size() <= #candidates then
      for _, member in ipairs(read_all()) do found[member] = true end
    else
      for start = 1, #candidates, 4000 do
        local chunk = {unpack(candidates, start, math.min(start + 3999, #candidates))}
        for k, answer in ipairs(test_many(chunk)) do
          if answer and answer ~= 0 then found[chunk[k]] = true end
        end
      end
    end
    return found
  end
end

local function hidden_items(user, candidates)
  local hidden = membership(
    function() return redis.call('SCARD', K.unavailable_items) end,
    function() return redis.call('SMEMBERS', K.unavailable_items) end,
    function(chunk) return redis.call('SMISMEMBER', K.unavailable_items, unpack(chunk)) end
  )(candidates)
  if user ~= '' then
    local affinity = key('user_affinity', user)
    local seen = membership(
      function() return redis.call('ZCARD', affinity) end,
      function() return redis.call('ZRANGE', affinity, 0, -1) end,
      function(chunk) return redis.call('ZMSCORE', affinity, unpack(chunk)) end)(candidates)
    for item in pairs(seen) do hidden[item] = true end
  end
  return hidden
end
