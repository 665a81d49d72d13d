-- Which candidates must not be shown: unavailable items and, for a user, items they already
-- interacted with. The one definition of that filter (score_candidates.lua and
-- top_of_ranking.lua use it).

-- Membership tests against a set that is smaller than the candidate list are cheaper as one
-- read of the whole set than as one command per candidate.
local function membership(size, read_all, test_one)
  return function(candidates)
    local found = {}
    if size() <= #candidates then
      for _, member in ipairs(read_all()) do found[member] = true end
    else
      for _, candidate in ipairs(candidates) do
        if test_one(candidate) then found[candidate] = true end
      end
    end
    return found
  end
end

local function hidden_items(user, candidates)
  local hidden = membership(
    function() return redis.call('SCARD', K.unavailable_items) end,
    function() return redis.call('SMEMBERS', K.unavailable_items) end,
    function(c) return redis.call('SISMEMBER', K.unavailable_items, c) == 1 end)(candidates)
  if user ~= '' then
    local affinity = key('user_affinity', user)
    local seen = membership(
      function() return redis.call('ZCARD', affinity) end,
      function() return redis.call('ZRANGE', affinity, 0, -1) end,
      function(c) return redis.call('ZSCORE', affinity, c) end)(candidates)
    for item in pairs(seen) do hidden[item] = true end
  end
  return hidden
end
