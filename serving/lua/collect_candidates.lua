-- Collects what scoring needs in one round trip, read-only: for each voting item its
-- co-occurrence row (top `depth` by count) with the candidates a user may be shown, the
-- user counts n of voters and candidates, and the voters' titles.
--
-- Done inside Redis because the client would otherwise send thousands of candidate ids back
-- (HMGET, ZMSCORE, SMISMEMBER); packing those commands costs the client more than the
-- lookups cost Redis.
--
-- ARGV[1]: config JSON {keys}; ARGV[2]: user id ('' for none: nothing is "seen");
-- ARGV[3]: category ('' for any); ARGV[4]: depth; ARGV[5..]: voting item ids.
-- Returns {voter_counts, voter_titles, rows, candidate_counts}:
--   voter_counts[k], voter_titles[k] belong to voter k ('' when unknown);
--   rows[k] = {j1, c_1, j2, c_2, ...} for voter k, kept candidates only;
--   candidate_counts = {j1, n_j1, j2, n_j2, ...} for every kept candidate.

local config = cjson.decode(ARGV[1])
local K = config.keys
local user, category, depth = ARGV[2], ARGV[3], tonumber(ARGV[4])

local function key(name, id)
  local template = K[name]
  return template[1] .. id .. template[2]
end

local affinity = user ~= '' and key('user_affinity', user) or nil
local members = category ~= '' and key('category_items', category) or nil

local verdict = {}  -- candidate -> n_j (string) when kept, false when rejected
local function keep(candidate)
  local known = verdict[candidate]
  if known ~= nil then return known end
  local kept = not (affinity and redis.call('ZSCORE', affinity, candidate))
    and redis.call('SISMEMBER', K.unavailable_items, candidate) == 0
    and (members == nil or redis.call('SISMEMBER', members, candidate) == 1)
  if kept then
    kept = redis.call('HGET', K.item_user_counts, candidate) or '0'
  end
  verdict[candidate] = kept
  return kept
end

local voter_counts, voter_titles, rows, candidate_counts = {}, {}, {}, {}
for k = 5, #ARGV do
  local voter = ARGV[k]
  voter_counts[#voter_counts + 1] = redis.call('HGET', K.item_user_counts, voter) or '0'
  voter_titles[#voter_titles + 1] = redis.call('HGET', key('item_meta', voter), 'title') or ''
  local row = redis.call('ZREVRANGE', key('item_cooccurrence', voter), 0, depth - 1,
    'WITHSCORES')
  local kept_row = {}
  for r = 1, #row, 2 do
    local candidate = row[r]
    local first_sight = verdict[candidate] == nil
    local n = keep(candidate)
    if n then
      kept_row[#kept_row + 1] = candidate
      kept_row[#kept_row + 1] = row[r + 1]
      if first_sight then
        candidate_counts[#candidate_counts + 1] = candidate
        candidate_counts[#candidate_counts + 1] = n
      end
    end
  end
  rows[#rows + 1] = kept_row
end
return {voter_counts, voter_titles, rows, candidate_counts}
