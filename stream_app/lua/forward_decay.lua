-- Forward decay, mirroring streamrec.contract.decay.forward_decayed (a unit test checks both
-- give the same numbers): the stored contribution of `weight` seen at `event_time_ms`.
local function forward_decayed(weight, event_time_ms, anchor_ms, half_life_ms)
  return weight * 2 ^ ((event_time_ms - anchor_ms) / half_life_ms)
end
