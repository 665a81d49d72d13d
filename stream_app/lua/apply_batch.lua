-- Applies one batch of validated records to the recommender state, atomically.
-- Loaded after keys.lua (key names) and forward_decay.lua (StateWriter joins them).
--
-- Exactly-once effect: Kafka redelivers records after a crash or a rebalance (offsets are
-- committed after the state is written). Every record carries its stream position
-- (source = "topic:partition", offset); this script skips positions at or below the highest
-- offset already applied for that source and advances it in the same atomic call as the
-- state changes. A redelivered record therefore changes nothing, and a crash can never
-- leave the state half-written, because a script runs to completion or not at all.
-- (Python validates every argument first, so no runtime error can stop the script midway.)
--
-- A new log: a broker that lost its data (the embedded one after a restart) numbers offsets
-- from 0 again. streamrec.contract.topics writes an epoch record (a random log id) first in
-- every partition it creates; when a source's log id changes, its guard starts over from that
-- record's offset instead of skipping the new log as "already applied".
--
-- Producers that resend: an event id already applied for the same user within
-- `event_id_window_ms` counts as a duplicate and changes nothing.
--
-- Erasure: every interaction a user contributed is logged in order (user:{u}:contributions).
-- A `forget` record replays that log through the same update code with the sign reversed,
-- on a scratch copy of the user's history (so first interactions and windows come out as they
-- did; a user still too new to share had added nothing), subtracting exactly what the user added to every shared aggregate; then it deletes
-- the user's keys and the lists served to them, records an audit entry, and marks the user
-- erased so that their events stamped before the request are dropped. A long log takes
-- several calls (the command budget); the progress is kept in erasure:{u}, so a crash resumes.
--
-- ARGV[1]: config JSON (key templates from streamrec.contract.keys, weights, windows, decay,
--          and `record_fields`: each record kind's field names, in the order Python sends)
-- ARGV[2]: records JSON, each an array: the kind first, then that kind's fields.
-- Returns {applied, duplicates_skipped, dead_lettered, duplicate_events, records_taken,
--          applied_by_type}: the last a flat array of event type and count pairs (for the
--          worker's metrics; it costs no Redis command).

local records = cjson.decode(ARGV[2])

-- Erasure takes an event back out with the settings in force, so a state is learned with one
-- set of them throughout: the first batch records them, and a writer with others is refused
-- before it changes anything, told which differ. Compared by value (30 and 30.0 are
-- equal) on the settings both name. A writer may add entries to a mapping (a new event
-- type: no event of it was learned, so none needs taking back out), not change or drop one.
-- When this writer names a setting or an entry the record does not (a newer version or a new
-- type), its settings become the record (as Python wrote them: cjson would round).
local function covers(current, recorded)  -- whether current keeps recorded; whether it adds
  if type(current) ~= 'table' or type(recorded) ~= 'table' then
    return current == recorded, false
  end
  local adds = false
  for k, v in pairs(recorded) do
    local kept, more = covers(current[k], v)
    if not kept then return false, false end
    adds = adds or more
  end
  for k in pairs(current) do if recorded[k] == nil then adds = true end end
  return true, adds
end
local learned_with = redis.call('GET', K.learning_settings)
local recorded = learned_with and cjson.decode(learned_with) or {}
local unrecorded, differing = not learned_with, {}
for name, value in pairs(cjson.decode(config.learning_settings)) do
  if recorded[name] == nil then
    unrecorded = true
  else
    local kept, adds = covers(value, recorded[name])
    if not kept then differing[#differing + 1] = name end
    unrecorded = unrecorded or adds
  end
end
if #differing > 0 then  -- the names (no spaces in them), then the record as it is stored
  table.sort(differing)
  return redis.error_reply('LEARNING_SETTINGS_CHANGED ' .. cjson.encode(differing) .. ' '
                           .. learned_with)
end
if unrecorded then redis.call('SET', K.learning_settings, config.learning_settings) end

-- Bounded work: every command goes through call(); once `max_commands` have run, the script
-- stops before the next record (never inside one) and returns how many it took. Python calls
-- again with the rest, so one call never holds Redis for long, whatever the batch holds.
local commands = 0
local function call(...)
  commands = commands + 1
  return redis.call(...)
end
local separator = config.list_separator
local pair_window = config.pair_window
local sequence_window = config.sequence_window
local window_length = math.max(pair_window, sequence_window)
local anchor = config.decay_anchor_ms
local applied_at = config.applied_at_ms
-- Ids are printable (the contract forbids control characters): the separator (\31, from
-- streamrec.contract.keys like the recommender field's name) cannot occur in one.
local UNIT = config.shown_separator
local RECOMMENDER_FIELD = config.recommender_field
local EXPERIMENT_FIELD = config.experiment_field
local OWNER_FIELD = config.owner_field
-- What remains of an entry after a subtraction that is within rounding of nothing.
local ROUNDING = 1e-12

local function named(record)
  local fields = {}
  for position, name in ipairs(config.record_fields[record[1]]) do
    fields[name] = record[position + 1]
  end
  return fields
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
local function fresh(source, offset)
  local highest = highest_applied[source]
  if highest == nil then
    local stored = call('HGET', K.applied_offsets, source)
    highest = stored and tonumber(stored) or -1
    highest_applied[source] = highest
  end
  return offset > highest
end

local function first_delivery(source, offset)
  if not fresh(source, offset) then return false end
  highest_applied[source] = offset
  return true
end

local function new_log(source, offset, log_id)
  if call('HGET', K.log_epochs, source) == log_id then return false end
  call('HSET', K.log_epochs, source, log_id)
  highest_applied[source] = offset
  return true
end

local event_id_sets = {}   -- per-user event id sets touched in this batch
local function first_time_event(user, event_id)
  local ids = key('user_event_ids', user)
  if not event_id_sets[ids] then  -- forget ids older than the window before looking
    call('ZREMRANGEBYSCORE', ids, '-inf', '(' .. (applied_at - config.event_id_window_ms))
    event_id_sets[ids] = true
  end
  return call('ZADD', ids, 'NX', applied_at, event_id) == 1
end

-- shared aggregates change only here: `sign` -1 subtracts what +1 added ------------------
local function add_to_ranking(ranking, amount, member)
  local total = tonumber(call('ZINCRBY', ranking, amount, member))
  if amount < 0 and total <= -amount * ROUNDING then call('ZREM', ranking, member) end
end

local function add_to_count(counts, amount, field)
  local total = tonumber(call('HINCRBYFLOAT', counts, field, amount))
  if amount < 0 and total <= -amount * ROUNDING then call('HDEL', counts, field) end
end

-- per-batch caches and the sets of keys to tidy once at the end ---------------------------
local categories_of = {}
local function categories(item)
  local found = categories_of[item]
  if found == nil then
    found = split(call('HGET', key('item_meta', item), 'categories'))
    categories_of[item] = found
  end
  return found
end

local user_newest = {}      -- user -> newest event time applied in this batch
local interacting = {}      -- users with an interaction in this batch
local grown_rows = {}       -- co-occurrence and next rows that may exceed the cap (keys)
local grown_user_sets = {}  -- items' user sets that may exceed `item_users_kept` (keys)
local batch_newest = 0

local function saw_user(user, ts)
  if (user_newest[user] or -1) < ts then user_newest[user] = ts end
  if batch_newest < ts then batch_newest = ts end
end

-- Online experiments ----------------------------------------------------------------------
-- Counted here, with the list and its feedback, so exactly once like every other counter, in
-- a constant number of commands per record. Per variant: users, lists, items shown, events
-- attributed; and the per-user sums the results' statistics need (the user is the unit of
-- randomisation, so a CTR's variance comes from users' (clicks, items shown) pairs: their
-- sums of squares and products grow here as each user's own counts grow). An interleaved
-- list credits each click to the variant that placed the item, and counts which variant the
-- list preferred (more clicks on its items).
local function stat(variant, name)
  return variant .. UNIT .. name
end

local function count_experiment_list(e, unit, teams)
  local metrics = key('experiment_metrics', e.experiment)
  local users = key('experiment_users', e.experiment)
  local shown = #e.item_ids
  if #teams > 0 then
    local placed = {}
    for _, team in ipairs(e.item_variants) do placed[team] = (placed[team] or 0) + 1 end
    local new_user = call('HSETNX', users, unit, '') == 1
    for _, team in ipairs(teams) do
      if new_user then call('HINCRBY', metrics, stat(team, 'users'), 1) end
      call('HINCRBY', metrics, stat(team, 'lists'), 1)
      call('HINCRBY', metrics, stat(team, 'items_shown'), placed[team])
    end
    return
  end
  local variant = e.variant
  if call('HSETNX', users, unit, variant) == 1 then
    call('HINCRBY', metrics, stat(variant, 'users'), 1)
  end
  call('HINCRBY', metrics, stat(variant, 'lists'), 1)
  call('HINCRBY', metrics, stat(variant, 'items_shown'), shown)
  local items_shown = call('HINCRBY', users, stat(unit, 'items_shown'), shown)
  local clicks = tonumber(call('HGET', users, stat(unit, 'click')) or '0')
  local before = items_shown - shown
  call('HINCRBY', metrics, stat(variant, 'items_shown_squares'),
       items_shown * items_shown - before * before)
  call('HINCRBY', metrics, stat(variant, 'clicks_by_items_shown'), clicks * shown)
end

local function count_experiment_feedback(list, tag, team, event_type)
  local experiment, variant, unit, teams = tag[1], tag[2], tag[3], tag[4]
  local metrics = key('experiment_metrics', experiment)
  if team ~= '' then  -- interleaved: a click is a vote of the list for the item's variant
    call('HINCRBY', metrics, stat(team, event_type), 1)
    if event_type ~= 'click' then return end
    local other = teams[1] == team and teams[2] or teams[1]
    local mine = call('HINCRBY', list, UNIT .. UNIT .. team, 1)
    local theirs = other and tonumber(call('HGET', list, UNIT .. UNIT .. other) or '0') or 0
    if mine == theirs + 1 then      -- the list now prefers `team` (it was level)
      call('HINCRBY', metrics, stat(team, 'preferred_lists'), 1)
    elseif mine == theirs then      -- level again: it no longer prefers `other`
      call('HINCRBY', metrics, stat(other, 'preferred_lists'), -1)
    end
    return
  end
  call('HINCRBY', metrics, stat(variant, event_type), 1)
  local users = key('experiment_users', experiment)
  if event_type == 'click' then
    local clicks = call('HINCRBY', users, stat(unit, 'click'), 1)
    local items_shown = tonumber(call('HGET', users, stat(unit, 'items_shown')) or '0')
    call('HINCRBY', metrics, stat(variant, 'click_squares'), 2 * clicks - 1)
    call('HINCRBY', metrics, stat(variant, 'clicks_by_items_shown'), items_shown)
  elseif event_type == 'purchase' and call('HINCRBY', users, stat(unit, 'purchase'), 1) == 1 then
    call('HINCRBY', metrics, stat(variant, 'converted_users'), 1)
  end
end

-- An event on an item of a served list counts for the list's recommender once per (list,
-- item, event type), and only while the list is remembered (its impression set it) and only
-- when the user is the one it was served to; and, when the list was served in an
-- experiment, for the variant that made it.
local function count_feedback(recommendation_id, event_type, item, user)
  local list = key('recommendation', recommendation_id)
  local found = call('HMGET', list, RECOMMENDER_FIELD, item, EXPERIMENT_FIELD, OWNER_FIELD)
  local recommender, team, tag, owner = found[1], found[2], found[3], found[4]
  if not recommender or not team or owner ~= user then return end
  if call('HSETNX', list, UNIT .. event_type .. UNIT .. item, 1) == 0 then return end
  call('HINCRBY', key('recommender_metrics', recommender), event_type, 1)
  if tag then count_experiment_feedback(list, cjson.decode(tag), team, event_type) end
end

-- Which of `window`'s items ({item, time, ...}, newest first) share a session with the
-- moment `at`: those linked to it by a chain of items at most `session_gap_ms` apart, on
-- either side of it in time (a late event sits between the items it came after). The same
-- definition as serving/scoring.py's same_session (tests/support/sessions.py holds both to
-- one table of cases).
local function same_session(window, at)
  local count, times, inside = #window / 2, {}, {}
  local older = count + 1
  for d = count, 1, -1 do
    times[d] = tonumber(window[2 * d])
    if times[d] < at then older = d end
  end
  for _, side in ipairs({{older, count, 1}, {older - 1, 1, -1}}) do
    local linked, previous = true, at
    for d = side[1], side[2], side[3] do
      linked = linked and math.abs(previous - times[d]) <= config.session_gap_ms
      inside[d], previous = linked, times[d]
    end
  end
  return inside
end

-- the model updates ----------------------------------------------------------------------
-- `user` owns the per-user keys (a scratch copy when sharing or erasing) and `person` is the
-- user the event is about; `sign` is +1 to learn the event and -1 to take it back out of
-- the shared aggregates; `share` says whether the shared aggregates learn it at all (not
-- while the user is new: see apply_interaction).
-- One user moves an item's popularity and trending once per event type (resending a
-- purchase a thousand times counts once) and its co-occurrence and sequence rows once.
local function learn_interaction(user, person, item, event_type, ts, sign, share)
  local weight = config.event_weights[event_type]
  local affinity = forward_decayed(weight, ts, anchor, config.affinity_half_life_ms)

  local types_key = key('user_item_types', user)
  local given = call('HGET', types_key, item)
  local first_time = not given
  local first_of_type = first_time or not string.find(given, UNIT .. event_type .. UNIT, 1, true)
  if first_of_type then call('HSET', types_key, item, (given or UNIT) .. event_type .. UNIT) end

  call('ZINCRBY', key('user_affinity', user), affinity, item)
  local category_affinity_key = key('user_category_affinity', user)
  for _, category in ipairs(categories(item)) do
    call('ZINCRBY', category_affinity_key, affinity, category)
  end

  if share and first_of_type then
    local trend = forward_decayed(weight, ts, anchor, config.trending_half_life_ms)
    add_to_ranking(K.popularity, sign * weight, item)
    add_to_ranking(K.trending, sign * trend, item)
    for _, category in ipairs(categories(item)) do
      add_to_ranking(key('category_popularity', category), sign * weight, item)
      add_to_ranking(key('category_trending', category), sign * trend, item)
    end
  end

  local recent_key = key('user_recent', user)
  if share and first_time then
    -- n_i counts distinct users; c_ij grows for the user's last W distinct items; i is
    -- 'next' after each of the last S at distance d with 1/d. With a half-life, every
    -- increment is forward-decayed (as trending), so old pairs fade and the similarities,
    -- which divide c_ij by n_i and n_j on the same scale, stay exact. A pair with an item of
    -- an earlier session (past a gap of more than `session_gap_ms` between two of the
    -- user's items, this one included) grows c_ij by `earlier_session_pair` instead of 1:
    -- what one visit holds belongs together more than last week's visit and today's.
    local count = 1
    if config.cooccurrence_half_life_ms > 0 then
      count = forward_decayed(1, ts, anchor, config.cooccurrence_half_life_ms)
    end
    count = sign * count
    add_to_count(K.item_user_counts, count, item)
    local users = key('item_users', item)
    if sign > 0 then
      call('ZADD', users, ts, person)
      grown_user_sets[users] = true
    else
      call('ZREM', users, person)
    end
    local window = call('ZREVRANGE', recent_key, 0, window_length - 1, 'WITHSCORES')
    if #window > 0 then
      local row = key('item_cooccurrence', item)
      local inside = same_session(window, tonumber(ts))
      for distance = 1, #window / 2 do
        local other = window[2 * distance - 1]
        if distance <= pair_window then
          local pair = count
          if not inside[distance] then pair = count * config.earlier_session_pair end
          local other_row = key('item_cooccurrence', other)
          add_to_ranking(row, pair, other)
          add_to_ranking(other_row, pair, item)
          grown_rows[other_row] = true
        end
        if distance <= sequence_window then
          local next_row = key('item_next', other)
          add_to_ranking(next_row, count / distance, item)
          grown_rows[next_row] = true
        end
      end
      grown_rows[row] = true
    end
  end
  -- GT keeps the newest time when events arrive out of order; CH reports a change.
  return call('ZADD', recent_key, 'GT', 'CH', ts, item) == 1, first_time
end

-- What learn_interaction writes for a user: all a scratch copy ever holds.
local LEARNED_PER_USER = {'user_recent', 'user_affinity', 'user_category_affinity',
                          'user_item_types'}
-- Every key that belongs to one user.
local PER_USER_STATE = {'user_recent_types', 'user_watermark', unpack(LEARNED_PER_USER)}
local OTHER_PER_USER = {'user_shown', 'user_weighting_lists', 'user_event_ids',
                        'user_preferences', 'user_contributions'}

local function delete_keys(names, user)
  for _, name in ipairs(names) do call('DEL', key(name, user)) end
end

local function delete_user_keys(user)
  delete_keys(PER_USER_STATE, user)
  delete_keys(OTHER_PER_USER, user)
end

-- Shilling: a fake user costs one request, so a new user's interactions shape only their own
-- recommendations until their history shows some breadth (`shared_after_items` distinct
-- items; `shared_after_events` bounds what the catch-up below replays). Then their logged
-- contributions are learned in order on a scratch copy, exactly as if shared from the start.
local SHARED = config.shared_field
local sharing_users = {}
local function sharing(user)
  local known = sharing_users[user]
  if known == nil then
    known = call('HEXISTS', key('user_item_types', user), SHARED) == 1
    sharing_users[user] = known
  end
  return known
end

local function start_sharing(user)
  local types_key = key('user_item_types', user)
  local contributions = key('user_contributions', user)
  if call('HLEN', types_key) < config.shared_after_items
      and call('LLEN', contributions) < config.shared_after_events then
    return
  end
  local scratch = UNIT .. 'sharing' .. UNIT .. user
  for _, logged in ipairs(call('LRANGE', contributions, 0, -1)) do
    local entry = cjson.decode(logged)
    if #entry == 3 then
      learn_interaction(scratch, user, entry[1], entry[2], entry[3], 1, true)
    end
  end
  delete_keys(LEARNED_PER_USER, scratch)
  call('HSET', types_key, SHARED, 1)
  sharing_users[user] = true
end

-- The self-tuning blend (serving/scoring.py): the lists that the weightings it judges would
-- have served a user wait in user:{u}:weighting_lists until the user's next item new to
-- them, which judges them all at once: every count in blend_evidence is first multiplied by
-- 1 - 1/horizon, then the trials grow by 1 and each weighting whose list held the item by 1.
-- The lists are consumed (one judgement per list); a constant number of commands.
local evidence_kept = 1 - 1 / config.blend_evidence_horizon
local TRIALS = config.blend_trials_field
local function judge_weightings(user, item)
  local waiting = key('user_weighting_lists', user)
  local lists = call('HGETALL', waiting)
  if #lists == 0 then return end
  call('DEL', waiting)
  local stored = call('HGETALL', K.blend_evidence)
  local counts = {}
  for f = 1, #stored, 2 do counts[stored[f]] = tonumber(stored[f + 1]) * evidence_kept end
  counts[TRIALS] = (counts[TRIALS] or 0) + 1
  local wrapped = UNIT .. item .. UNIT
  for f = 1, #lists, 2 do
    local held = string.find(UNIT .. lists[f + 1] .. UNIT, wrapped, 1, true) ~= nil
    counts[lists[f]] = (counts[lists[f]] or 0) + (held and 1 or 0)
  end
  local fields = {}
  for field, count in pairs(counts) do
    fields[#fields + 1] = field
    fields[#fields + 1] = string.format('%.17g', count)
  end
  call('HSET', K.blend_evidence, unpack(fields))
end

local function apply_interaction(e)
  local user, item = e.user_id, e.item_id
  local shared = sharing(user)
  local changed, first_time = learn_interaction(user, user, item, e.event_type, e.timestamp, 1,
                                                shared)
  if changed then
    call('HSET', key('user_recent_types', user), item, e.event_type)
  end
  if first_time then judge_weightings(user, item) end
  call('RPUSH', key('user_contributions', user),
       cjson.encode({item, e.event_type, e.timestamp}))
  if not shared then start_sharing(user) end
  if e.recommendation_id ~= '' then
    count_feedback(e.recommendation_id, e.event_type, item, user)
  end
  interacting[user] = true
  saw_user(user, e.timestamp)
end

-- A served list costs a constant number of commands, whatever its length: the user's recent
-- lists gain one entry, and the list is remembered (never re-mapped) with its items, so the
-- events that come back on it can be checked against it; its weightings' lists replace the
-- user's waiting ones.
local function apply_impression(e)
  local shown = key('user_shown', e.user_id)
  call('LPUSH', shown, table.concat(e.item_ids, UNIT))
  call('LTRIM', shown, 0, config.shown_lists_kept - 1)
  call('EXPIRE', shown, config.shown_ttl_seconds)
  if next(e.weighting_lists) then
    local waiting = key('user_weighting_lists', e.user_id)
    local fields = {}
    for label, ids in pairs(e.weighting_lists) do
      fields[#fields + 1] = label
      fields[#fields + 1] = table.concat(ids, UNIT)
    end
    call('DEL', waiting)
    call('HSET', waiting, unpack(fields))
    call('EXPIRE', waiting, config.shown_ttl_seconds)
  end
  -- Only a list the service served (signed: streamrec.contract.attribution) is remembered
  -- for feedback; an app's own ("unattributed") cannot take a served list's id first.
  local list = key('recommendation', e.recommendation_id)
  if e.recommendation_id ~= '' and e.recommender ~= config.unattributed
      and call('EXISTS', list) == 0 then
    local fields = {RECOMMENDER_FIELD, e.recommender, OWNER_FIELD, e.user_id}
    for position, item in ipairs(e.item_ids) do
      fields[#fields + 1] = item
      fields[#fields + 1] = e.item_variants[position] or ''
    end
    local unit, teams = nil, {}
    if e.experiment ~= '' then
      unit = redis.sha1hex(e.user_id)
      local seen = {}
      for _, team in ipairs(e.item_variants) do
        if not seen[team] then teams[#teams + 1], seen[team] = team, true end
      end
      fields[#fields + 1] = EXPERIMENT_FIELD
      fields[#fields + 1] = cjson.encode({e.experiment, e.variant, unit, teams})
    end
    call('HSET', list, unpack(fields))
    call('EXPIRE', list, config.recommendation_ttl_seconds)
    -- the list shows what the user was shown: erased with them
    call('RPUSH', key('user_contributions', e.user_id), cjson.encode({e.recommendation_id}))
    local metrics = key('recommender_metrics', e.recommender)
    call('HINCRBY', metrics, 'impression', 1)
    call('HINCRBY', metrics, 'items_shown', #e.item_ids)
    call('SADD', K.recommenders, e.recommender)
    if unit then count_experiment_list(e, unit, teams) end
  end
  saw_user(e.user_id, e.timestamp)
end

-- A category's rankings hold its members' global scores, so an item that joins a category
-- (even after its first events) brings its score along, and one that leaves takes it away.
local function apply_item(e)
  local item, new_categories = e.item_id, e.categories
  local meta = key('item_meta', item)
  local keep, had = {}, {}
  for _, category in ipairs(new_categories) do keep[category] = true end
  for _, category in ipairs(split(call('HGET', meta, 'categories'))) do
    had[category] = true
    if not keep[category] then
      call('SREM', key('category_items', category), item)
      call('ZREM', key('category_popularity', category), item)
      call('ZREM', key('category_trending', category), item)
    end
  end
  local popularity = call('ZSCORE', K.popularity, item)
  local trending = call('ZSCORE', K.trending, item)
  for _, category in ipairs(new_categories) do
    call('SADD', key('category_items', category), item)
    if popularity and not had[category] then
      call('ZADD', key('category_popularity', category), popularity, item)
      call('ZADD', key('category_trending', category), trending, item)
    end
  end
  call('HSET', meta,
    'categories', table.concat(new_categories, separator),
    'tags', table.concat(e.tags, separator),
    'available', e.available and '1' or '0',
    'title', e.title)
  if e.available then
    call('SREM', K.unavailable_items, item)
  else
    call('SADD', K.unavailable_items, item)
  end
  categories_of[item] = new_categories
end

-- erasure ---------------------------------------------------------------------------------
-- Takes the user's logged contributions back out, from where an interrupted call stopped;
-- returns false when the command budget ran out first (the caller comes back for the rest).
local function forget(e)
  local user = e.user_id
  local progress = key('erasure', user)
  local scratch = UNIT .. 'erasing' .. UNIT .. user
  local contributions = key('user_contributions', user)
  local done = tonumber(call('HGET', progress, 'done') or '0')
  local total = call('LLEN', contributions)
  local shared = sharing(user)
  local started = done
  while done < total do
    if done > started and commands >= config.max_commands then  -- always some progress
      call('HSET', progress, 'done', done)
      return false
    end
    local entry = cjson.decode(call('LINDEX', contributions, done))
    if #entry == 3 then
      if shared then learn_interaction(scratch, user, entry[1], entry[2], entry[3], -1, true) end
    else
      call('DEL', key('recommendation', entry[1]))
    end
    done = done + 1
  end
  delete_user_keys(user)
  delete_keys(LEARNED_PER_USER, scratch)
  -- the user's entries in every experiment (their variant and per-user counts); the
  -- variants' totals are anonymous sums and stay
  local unit = redis.sha1hex(user)
  for _, experiment in ipairs(call('HKEYS', K.experiments)) do
    call('HDEL', key('experiment_users', experiment), unit, stat(unit, 'items_shown'),
         stat(unit, 'click'), stat(unit, 'purchase'))
  end
  call('DEL', progress)
  call('HSET', K.erased_users, user, e.timestamp)
  call('HSET', K.erasures, e.event_id, cjson.encode({
    user = e.pseudonym, requested_at_ms = e.timestamp, erased_at_ms = applied_at,
    contributions_removed = total}))
  return true
end

local erased_at = {}
local function erased_before(user, ts)
  local at = erased_at[user]
  if at == nil then
    at = tonumber(call('HGET', K.erased_users, user) or '-1')
    erased_at[user] = at
  end
  return ts <= at
end

-- the batch ------------------------------------------------------------------------------
local applied, skipped, dead_lettered, items, duplicate_events = 0, 0, 0, 0, 0
local erased_dropped, forgotten = 0, 0
local taken = 0
local taken_sources = {}
local applied_by_type = {}
local function count_applied(event_type)
  applied = applied + 1
  applied_by_type[event_type] = (applied_by_type[event_type] or 0) + 1
end
for _, r in ipairs(records) do
  if taken > 0 and commands >= config.max_commands then break end
  local e = named(r)
  local kind = r[1]
  if kind == 'forget' and fresh(e.source, e.offset) then
    if not forget(e) then break end  -- not taken: the next call resumes it
    forgotten = forgotten + 1
    -- what this batch learned about the user went with them
    erased_at[e.user_id], sharing_users[e.user_id] = nil, nil
    user_newest[e.user_id], interacting[e.user_id] = nil, nil
  end
  taken = taken + 1
  taken_sources[e.source] = true
  if kind == 'epoch' and new_log(e.source, e.offset, e.log_id) then
    -- the guard of this source now starts at the epoch record
  elseif not first_delivery(e.source, e.offset) then
    if kind ~= 'forget' then skipped = skipped + 1 end
  elseif kind == 'forget' then
    -- done above
  elseif (kind == 'interaction' or kind == 'impression')
      and erased_before(e.user_id, e.timestamp) then
    erased_dropped = erased_dropped + 1
  elseif kind == 'interaction' or kind == 'impression' then
    if not first_time_event(e.user_id, e.event_id) then
      duplicate_events = duplicate_events + 1
    elseif kind == 'interaction' then
      apply_interaction(e)
      count_applied(e.event_type)
    else
      apply_impression(e)
      count_applied('impression')
    end
  elseif kind == 'item' then
    apply_item(e)
    items = items + 1
  elseif kind == 'rejected' then
    dead_lettered = dead_lettered + 1
  end
end

for row in pairs(grown_rows) do
  local excess = call('ZCARD', row) - config.cooccurrence_row_cap
  if excess > 0 then call('ZREMRANGEBYRANK', row, 0, excess - 1) end
end

-- The newest users of each item; an item's users name people, so the set expires as a
-- user's own state does, `user_state_ttl_seconds` after its last addition (a member whose
-- own state expired sooner stays until then or until newer users push it out, and votes
-- again only once shared again; erasure and retention take members out at once).
for users in pairs(grown_user_sets) do
  call('ZREMRANGEBYRANK', users, 0, -config.item_users_kept - 1)
  call('EXPIRE', users, config.user_state_ttl_seconds)
end

-- Event ids are remembered for the window and at most `event_ids_kept` per user.
for ids in pairs(event_id_sets) do
  call('ZREMRANGEBYRANK', ids, 0, -config.event_ids_kept - 1)
  call('PEXPIRE', ids, config.event_id_window_ms)
end

-- Every per-user key is bounded and expires `user_state_ttl_seconds` after the user's last
-- applied event (the history by `history_length`, the items a user touched by
-- `affinity_items_kept`: the weakest are forgotten first, so they may be recommended again).
for user, newest in pairs(user_newest) do
  if interacting[user] then
    local recent_key = key('user_recent', user)
    local excess = call('ZCARD', recent_key) - config.history_length
    if excess > 0 then
      local dropped = call('ZRANGE', recent_key, 0, excess - 1)
      call('ZREMRANGEBYRANK', recent_key, 0, excess - 1)
      call('HDEL', key('user_recent_types', user), unpack(dropped))
    end
    call('ZREMRANGEBYRANK', key('user_affinity', user), 0, -config.affinity_items_kept - 1)
  end
  local watermark = key('user_watermark', user)
  local previous = tonumber(call('HGET', watermark, 'event_time_ms') or '-1')
  call('HSET', watermark,
    'event_time_ms', math.max(previous, newest), 'applied_at_ms', applied_at)
  for _, name in ipairs(PER_USER_STATE) do
    call('EXPIRE', key(name, user), config.user_state_ttl_seconds)
  end
  call('EXPIRE', key('user_contributions', user), config.user_state_ttl_seconds)
end

for source, offset in pairs(highest_applied) do
  call('HSET', K.applied_offsets, source, offset)
end
-- A partition whose records got through is flowing again, whichever worker process had said
-- it was stalled (a restarted or rebalanced worker does not know an earlier one's stall).
local flowing = {}
for source in pairs(taken_sources) do flowing[#flowing + 1] = source end
if #flowing > 0 then call('HDEL', K.stalled_partitions, unpack(flowing)) end
if applied > 0 then
  local previous = tonumber(call('HGET', K.watermark, 'event_time_ms') or '-1')
  call('HSET', K.watermark,
    'event_time_ms', math.max(previous, batch_newest), 'applied_at_ms', applied_at)
end
call('HINCRBY', K.counters, 'events_applied', applied)
call('HINCRBY', K.counters, 'items_applied', items)
call('HINCRBY', K.counters, 'dead_lettered', dead_lettered)
call('HINCRBY', K.counters, 'duplicates_skipped', skipped)
call('HINCRBY', K.counters, 'duplicate_events', duplicate_events)
call('HINCRBY', K.counters, 'erased_events_dropped', erased_dropped)
call('HINCRBY', K.counters, 'users_erased', forgotten)
local type_counts = {}
for event_type, count in pairs(applied_by_type) do
  type_counts[#type_counts + 1] = event_type
  type_counts[#type_counts + 1] = count
end
return {applied, skipped, dead_lettered, duplicate_events, taken, type_counts}
