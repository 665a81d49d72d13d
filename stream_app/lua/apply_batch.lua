-- Applies one batch of validated records to the recommender state, atomically.
--
-- Exactly-once effect: Kafka redelivers records after a crash or a rebalance (offsets are
-- committed after the state is written). Every record carries its stream position
-- (source = "topic:partition", offset); this script skips positions at or below the highest
-- offset already applied for that source and advances it in the same atomic call as the
-- state changes. A redelivered record therefore changes nothing, and a crash can never
-- leave the state half-written, because a script runs to completion or not at all.
-- (Python validates every argument first, so no runtime error can stop the script midway.)
--
-- ARGV[1]: config JSON (key templates from streamrec.contract.keys, weights, windows, decay)
-- ARGV[2]: records JSON, each one of
--   ["interaction", source, offset, user, item, event_type, ts_ms, recommendation_id]
--   ["impression",  source, offset, user, {item, ...}, ts_ms, recommendation_id, recommender]
--   ["item",        source, offset, item, categories, tags, available, title]
--   ["rejected",    source, offset]            (sent to dead-letter; only counted)
-- Returns {applied, duplicates_skipped, dead_lettered}.

local config = cjson.decode(ARGV[1])
local records = cjson.decode(ARGV[2])
local K = config.keys
local separator = config.list_separator
local pair_window = config.pair_window
local sequence_window = config.sequence_window
local window_length = math.max(pair_window, sequence_window)
local anchor = config.decay_anchor_ms
local applied_at = config.applied_at_ms

local function key(name, id)
  local template = K[name]
  return template[1] .. id .. template[2]
end

local function split(joined)
  local parts = {}
  if joined then
    for part in string.gmatch(joined, '[^' .. separator .. ']+') do
      parts[#parts + 1] = part
    end
  end
  return parts
end

-- exactly-once guard -------------------------------------------------------------------
local highest_applied = {}
local function first_delivery(source, offset)
  local highest = highest_applied[source]
  if highest == nil then
    local stored = redis.call('HGET', K.applied_offsets, source)
    highest = stored and tonumber(stored) or -1
  end
  if offset <= highest then
    highest_applied[source] = highest
    return false
  end
  highest_applied[source] = offset
  return true
end

-- per-batch caches and the sets of keys to tidy once at the end ---------------------------
local categories_of = {}
local function categories(item)
  local found = categories_of[item]
  if found == nil then
    found = split(redis.call('HGET', key('item_meta', item), 'categories'))
    categories_of[item] = found
  end
  return found
end

local recommender_of = {}
local function recommender_for(recommendation_id)
  local found = recommender_of[recommendation_id]
  if found == nil then
    found = redis.call('GET', key('recommendation', recommendation_id)) or 'unattributed'
    recommender_of[recommendation_id] = found
  end
  return found
end

local user_newest = {}      -- user -> newest event time applied in this batch
local interacting = {}      -- users with an interaction in this batch
local grown_rows = {}       -- co-occurrence and next rows that may exceed the cap (keys)
local batch_newest = 0

local function saw_user(user, ts)
  if (user_newest[user] or -1) < ts then user_newest[user] = ts end
  if batch_newest < ts then batch_newest = ts end
end

local function count_feedback(recommender, event_type, item)
  redis.call('SADD', K.recommenders, recommender)
  redis.call('HINCRBY', key('recommender_metrics', recommender), event_type, 1)
  redis.call('HINCRBY', key('item_feedback', event_type), item, 1)
end

-- the model updates ----------------------------------------------------------------------
local function apply_interaction(user, item, event_type, ts, recommendation_id)
  local weight = config.event_weights[event_type]
  local affinity = weight * 2 ^ ((ts - anchor) / config.affinity_half_life_ms)
  local trend = weight * 2 ^ ((ts - anchor) / config.trending_half_life_ms)

  local affinity_key = key('user_affinity', user)
  local first_time = redis.call('ZADD', affinity_key, 'NX', affinity, item) == 1
  if not first_time then redis.call('ZINCRBY', affinity_key, affinity, item) end

  redis.call('ZINCRBY', K.popularity, weight, item)
  redis.call('ZINCRBY', K.trending, trend, item)
  local category_affinity_key = key('user_category_affinity', user)
  for _, category in ipairs(categories(item)) do
    redis.call('ZINCRBY', category_affinity_key, affinity, category)
    redis.call('ZINCRBY', key('category_popularity', category), weight, item)
    redis.call('ZINCRBY', key('category_trending', category), trend, item)
  end

  local recent_key = key('user_recent', user)
  if first_time then
    -- n_i counts distinct users; c_ij grows for the user's last W distinct items; i is
    -- 'next' after each of the last S at distance d with 1/d. With a half-life, every
    -- increment is forward-decayed (as trending), so old pairs fade and cosine, which
    -- divides c_ij by sqrt(n_i n_j) on the same scale, stays exact.
    local count = 1
    if config.cooccurrence_half_life_ms > 0 then
      count = 2 ^ ((ts - anchor) / config.cooccurrence_half_life_ms)
    end
    redis.call('HINCRBYFLOAT', K.item_user_counts, item, count)
    local window = redis.call('ZREVRANGE', recent_key, 0, window_length - 1)
    if #window > 0 then
      local row = key('item_cooccurrence', item)
      for distance, other in ipairs(window) do
        if distance <= pair_window then
          local other_row = key('item_cooccurrence', other)
          redis.call('ZINCRBY', row, count, other)
          redis.call('ZINCRBY', other_row, count, item)
          grown_rows[other_row] = true
        end
        if distance <= sequence_window then
          local next_row = key('item_next', other)
          redis.call('ZINCRBY', next_row, count / distance, item)
          grown_rows[next_row] = true
        end
      end
      grown_rows[row] = true
    end
  end
  -- GT keeps the newest time when events arrive out of order; CH reports a change.
  if redis.call('ZADD', recent_key, 'GT', 'CH', ts, item) == 1 then
    redis.call('HSET', key('user_recent_types', user), item, event_type)
  end

  if recommendation_id ~= '' then
    count_feedback(recommender_for(recommendation_id), event_type, item)
  end
  interacting[user] = true
  saw_user(user, ts)
end

local function apply_impression(user, items, ts, recommendation_id, recommender)
  local shown = key('user_shown', user)
  for _, item in ipairs(items) do
    redis.call('HINCRBY', shown, item, 1)
    count_feedback(recommender, 'impression', item)
  end
  if recommendation_id ~= '' and recommender_of[recommendation_id] == nil then
    redis.call('SET', key('recommendation', recommendation_id), recommender,
      'EX', config.recommendation_ttl_seconds)
    recommender_of[recommendation_id] = recommender
  end
  saw_user(user, ts)
end

-- A category's rankings hold its members' global scores, so an item that joins a category
-- (even after its first events) brings its score along, and one that leaves takes it away.
local function apply_item(item, new_categories, tags, available, title)
  local meta = key('item_meta', item)
  local keep, had = {}, {}
  for _, category in ipairs(new_categories) do keep[category] = true end
  for _, category in ipairs(split(redis.call('HGET', meta, 'categories'))) do
    had[category] = true
    if not keep[category] then
      redis.call('SREM', key('category_items', category), item)
      redis.call('ZREM', key('category_popularity', category), item)
      redis.call('ZREM', key('category_trending', category), item)
    end
  end
  local popularity = redis.call('ZSCORE', K.popularity, item)
  local trending = redis.call('ZSCORE', K.trending, item)
  for _, category in ipairs(new_categories) do
    redis.call('SADD', key('category_items', category), item)
    if popularity and not had[category] then
      redis.call('ZADD', key('category_popularity', category), popularity, item)
      redis.call('ZADD', key('category_trending', category), trending, item)
    end
  end
  redis.call('HSET', meta,
    'categories', table.concat(new_categories, separator),
    'tags', table.concat(tags, separator),
    'available', available and '1' or '0',
    'title', title)
  if available then
    redis.call('SREM', K.unavailable_items, item)
  else
    redis.call('SADD', K.unavailable_items, item)
  end
  categories_of[item] = new_categories
end

-- the batch ------------------------------------------------------------------------------
local applied, skipped, dead_lettered, items = 0, 0, 0, 0
for _, r in ipairs(records) do
  local kind = r[1]
  if not first_delivery(r[2], r[3]) then
    skipped = skipped + 1
  elseif kind == 'interaction' then
    apply_interaction(r[4], r[5], r[6], r[7], r[8])
    applied = applied + 1
  elseif kind == 'impression' then
    apply_impression(r[4], r[5], r[6], r[7], r[8])
    applied = applied + 1
  elseif kind == 'item' then
    apply_item(r[4], r[5], r[6], r[7], r[8])
    items = items + 1
  else
    dead_lettered = dead_lettered + 1
  end
end

for row in pairs(grown_rows) do
  local excess = redis.call('ZCARD', row) - config.cooccurrence_row_cap
  if excess > 0 then redis.call('ZREMRANGEBYRANK', row, 0, excess - 1) end
end

for user, newest in pairs(user_newest) do
  if interacting[user] then
    redis.call('SADD', K.users, user)
    local recent_key = key('user_recent', user)
    local excess = redis.call('ZCARD', recent_key) - config.history_length
    if excess > 0 then
      local dropped = redis.call('ZRANGE', recent_key, 0, excess - 1)
      redis.call('ZREMRANGEBYRANK', recent_key, 0, excess - 1)
      redis.call('HDEL', key('user_recent_types', user), unpack(dropped))
    end
  end
  local watermark = key('user_watermark', user)
  local previous = tonumber(redis.call('HGET', watermark, 'event_time_ms') or '-1')
  redis.call('HSET', watermark,
    'event_time_ms', math.max(previous, newest), 'applied_at_ms', applied_at)
end

for source, offset in pairs(highest_applied) do
  redis.call('HSET', K.applied_offsets, source, offset)
end
if applied > 0 then
  local previous = tonumber(redis.call('HGET', K.watermark, 'event_time_ms') or '-1')
  redis.call('HSET', K.watermark,
    'event_time_ms', math.max(previous, batch_newest), 'applied_at_ms', applied_at)
end
redis.call('HINCRBY', K.counters, 'events_applied', applied)
redis.call('HINCRBY', K.counters, 'items_applied', items)
redis.call('HINCRBY', K.counters, 'dead_lettered', dead_lettered)
redis.call('HINCRBY', K.counters, 'duplicates_skipped', skipped)
return {applied, skipped, dead_lettered}
