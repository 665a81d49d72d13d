-- Loaded after keys.lua and hidden_items.lua (StateReader joins them).
-- Collects what scoring needs in one round trip, read-only: for each voting item its
-- co-occurrence row (top `depth` by count) and, for the newest `next_voters` of them, its
-- 'next' row, with the candidates a user may be shown; the user counts n of voters and
-- candidates, and the voters' titles.
--
-- Done inside Redis because the client would otherwise send thousands of candidate ids back
-- (HMGET, ZMSCORE, SMISMEMBER); packing those commands costs the client more than the
-- lookups cost Redis.
--
-- ARGV[1]: config JSON {keys}; ARGV[2]: user id ('' for none: nothing is "seen");
-- ARGV[3]: category ('' for any); ARGV[4]: depth; ARGV[5]: next_voters;
-- ARGV[6..]: voting item ids, newest first.
-- Returns {voter_counts, voter_titles, rows, next_rows, candidate_counts}:
--   voter_counts[k], voter_titles[k] belong to voter k ('' when unknown);
--   rows[k] = {j1, c_1, j2, c_2, ...} for voter k, kept candidates only;
--   next_rows[k] likewise from voter k's 'next' row (k <= next_voters);
--   candidate_counts = {j1, n_j1, j2, n_j2, ...} for every kept candidate.

local user, category, depth = ARGV[2], ARGV[3], tonumber(ARGV[4])
local next_voters = tonumber(ARGV[5])
local FIRST_VOTER = 6

local order, distinct = {}, {}
local function read_row(row_key)
  local row = redis.call('ZREVRANGE', row_key, 0, depth - 1, 'WITHSCORES')
  for r = 1, #row, 2 do
    if not distinct[row[r]] then
      distinct[row[r]] = true
      order[#order + 1] = row[r]
    end
  end
  return row
end
local rows, next_rows = {}, {}
for k = FIRST_VOTER, #ARGV do
  rows[#rows + 1] = read_row(key('item_cooccurrence', ARGV[k]))
  if k - FIRST_VOTER < next_voters then
    next_rows[#next_rows + 1] = read_row(key('item_next', ARGV[k]))
  end
end

local hidden = hidden_items(user, order)
local in_category = nil
if category ~= '' then
  local members = key('category_items', category)
  in_category = membership(
    function() return redis.call('SCARD', members) end,
    function() return redis.call('SMEMBERS', members) end,
    function(c) return redis.call('SISMEMBER', members, c) == 1 end)(order)
end

local kept, candidate_ids = {}, {}
for _, candidate in ipairs(order) do
  if not hidden[candidate] and (in_category == nil or in_category[candidate]) then
    kept[candidate] = true
    candidate_ids[#candidate_ids + 1] = candidate
  end
end

local voters = {}
for k = FIRST_VOTER, #ARGV do voters[#voters + 1] = ARGV[k] end
local voter_counts = redis.call('HMGET', K.item_user_counts, unpack(voters))
local voter_titles = {}
for k, voter in ipairs(voters) do
  voter_counts[k] = voter_counts[k] or '0'
  voter_titles[k] = redis.call('HGET', key('item_meta', voter), 'title') or ''
end

local candidate_counts = {}
if #candidate_ids > 0 then
  local counts = redis.call('HMGET', K.item_user_counts, unpack(candidate_ids))
  for k, candidate in ipairs(candidate_ids) do
    candidate_counts[#candidate_counts + 1] = candidate
    candidate_counts[#candidate_counts + 1] = counts[k] or '0'
  end
end

local function kept_only(all_rows)
  local result = {}
  for k, row in ipairs(all_rows) do
    local kept_row = {}
    for r = 1, #row, 2 do
      if kept[row[r]] then
        kept_row[#kept_row + 1] = row[r]
        kept_row[#kept_row + 1] = row[r + 1]
      end
    end
    result[k] = kept_row
  end
  return result
end
return {voter_counts, voter_titles, kept_only(rows), kept_only(next_rows), candidate_counts}
