-- Loaded after keys.lua and hidden_items.lua (StateReader joins them). Read-only.
-- Scores a user's (or a session's, or an item's) candidates where the data is: a dense
-- head's rows hold thousands of entries, and sending them to the service to be decoded and
-- summed there cost most of a personalised request. Only the top few come back.
--
-- Notation as in serving/scoring.py (the one description of the math): c_ij, n_i, next_ij;
-- votes v_i (co-occurrence) and v'_i (sequence) come from the caller.
--   co-occurrence  score_c(j) = sum_i v_i * s_ij      (s: count, cosine (with exponent
--                                                     alpha of n_i) or jaccard)
--   sequence       score_s(j) = sum_i v'_i * next_ij
--   blend          score(j)   = sum over sources of w * score(j) / max_j score(j)
-- Candidates hidden from the user (seen, unavailable) or (with a category) outside it are
-- dropped before scoring; excluded ones only when choosing (they still set a source's best,
-- as the caller's exclusions should not rescale the others). Ties go to the smaller item id. The reason of an item is the
-- source with the biggest weighted share (first source on a tie) and, in it, the voter with
-- the biggest term (first voter on a tie).
--
-- ARGV[1]: config JSON {keys}
-- ARGV[2]: request JSON {user ('' for none), category ('' for any), depth (of the strongest
--          voter's rows), similarity, alpha (cosine's exponent of n_i),
--          top, per_source (0: none), weights: [cooccurrence, sequence],
--          weightings: [[cooccurrence, sequence], ...] judged by the self-tuning blend,
--          weighting_top (how many of each weighting's best to return),
--          voters: [[item, v, v'], ...] newest first (v' 0 past the sequence voters),
--          exclude: [item, ...]}
-- Returns {blended, per_source_cooccurrence, per_source_sequence, titles, weighting_lists}:
--   blended = {j, score, source index (1 co-occurrence, 2 sequence), voter, ...} best first
--   per_source_* = {j, score, ...}: the top `per_source` of each source alone, unscaled
--   titles = {voter, title, ...} for the voters the catalogue has a title for
--   weighting_lists = {{j, ...}, ...}: per weighting, in order, its best `weighting_top` ids

local request = cjson.decode(ARGV[2])
local user, category, depth = request.user, request.category, request.depth
local voters = request.voters

-- A voter reads its row in proportion to its vote: `depth` entries for the strongest, fewer
-- for weaker (older, lighter) ones, whose deep entries could not reach the top anyway. Rows
-- cost the same per entry whatever they hold, so a dense head costs what its votes are worth.
local strongest = {0.0, 0.0}
for _, voter in ipairs(voters) do
  for source = 1, 2 do
    if voter[source + 1] > strongest[source] then strongest[source] = voter[source + 1] end
  end
end
local function depth_of(vote, source)
  return math.ceil(depth * vote / strongest[source])
end

local order, listed = {}, {}
local function read_row(row_key, row_depth)
  local row = redis.call('ZREVRANGE', row_key, 0, row_depth - 1, 'WITHSCORES')
  for r = 1, #row, 2 do
    if not listed[row[r]] then
      listed[row[r]] = true
      order[#order + 1] = row[r]
    end
  end
  return row
end
local rows, next_rows = {}, {}
for k, voter in ipairs(voters) do
  if voter[2] > 0 then
    rows[k] = read_row(key('item_cooccurrence', voter[1]), depth_of(voter[2], 1))
  end
  if voter[3] > 0 then
    next_rows[k] = read_row(key('item_next', voter[1]), depth_of(voter[3], 2))
  end
end

local dropped = hidden_items(user, order)
local excluded = {}
for _, item in ipairs(request.exclude) do excluded[item] = true end
if category ~= '' then
  local members = key('category_items', category)
  local inside = membership(
    function() return redis.call('SCARD', members) end,
    function() return redis.call('SMEMBERS', members) end,
    function(chunk) return redis.call('SMISMEMBER', members, unpack(chunk)) end)(order)
  for _, item in ipairs(order) do
    if not inside[item] then dropped[item] = true end
  end
end
local kept = {}
for _, item in ipairs(order) do
  if not dropped[item] then kept[#kept + 1] = item end
end

-- n of voters and kept candidates, for the similarity
local user_counts = {}
local function read_counts(items)
  if #items == 0 then return end
  local counts = redis.call('HMGET', K.item_user_counts, unpack(items))
  for k, item in ipairs(items) do user_counts[item] = tonumber(counts[k] or '0') end
end
local voter_ids = {}
for k, voter in ipairs(voters) do voter_ids[k] = voter[1] end
if request.similarity ~= 'count' then
  read_counts(voter_ids)
  for start = 1, #kept, 4000 do  -- unpack() has a limit on its arguments
    read_counts({unpack(kept, start, math.min(start + 3999, #kept))})
  end
end

local alpha = request.alpha
local function similarity(c_ij, n_i, n_j)
  if request.similarity == 'count' then return c_ij end
  if request.similarity == 'cosine' then
    if n_i <= 0 or n_j <= 0 then return 0.0 end
    -- plain cosine bit for bit as before (powers round differently, which moves ties)
    if alpha == 0.5 then return c_ij / math.sqrt(n_i * n_j) end
    return c_ij / (n_i ^ alpha * n_j ^ (1 - alpha))
  end
  local union = n_i + n_j - c_ij
  if union > 0 then return c_ij / union end
  return 0.0
end

-- one source: totals per candidate and, per candidate, its biggest term and voter
local function source(vote_index, term_of, source_rows)
  local totals, best, best_voter, top = {}, {}, {}, 0.0
  for k, voter in ipairs(voters) do
    local vote = voter[vote_index]
    local row = source_rows[k]
    if row and vote > 0 then
      for r = 1, #row, 2 do
        local j = row[r]
        if not dropped[j] then
          local term = vote * term_of(tonumber(row[r + 1]), voter[1], j)
          local total = totals[j]
          if total == nil then
            totals[j], best[j], best_voter[j] = term, term, voter[1]
          else
            totals[j] = total + term
            if term > best[j] then best[j], best_voter[j] = term, voter[1] end
          end
        end
      end
    end
  end
  for _, total in pairs(totals) do
    if total > top then top = total end
  end
  return {totals = totals, best_voter = best_voter, top = top}
end

local sources = {
  source(2, function(c_ij, i, j)
    return similarity(c_ij, user_counts[i] or 0.0, user_counts[j] or 0.0) end, rows),
  source(3, function(next_ij) return next_ij end, next_rows),
}

-- the best `count` of `scores` (item -> score), best first, ties to the smaller id: one pass
-- that compares each candidate with the worst chosen so far, and inserts only the few better
local function best_of(scores, count)
  local chosen, size = {}, 0
  if count <= 0 then return chosen end
  local worst, worst_item = nil, nil
  for item, score in pairs(scores) do
    if not excluded[item] and (size < count or score > worst
                               or (score == worst and item < worst_item)) then
      local at = size + 1
      while at > 1 do
        local other = chosen[at - 1]
        local other_score = scores[other]
        if other_score > score or (other_score == score and other < item) then break end
        chosen[at] = other
        at = at - 1
      end
      chosen[at] = item
      if size < count then size = size + 1 else chosen[count + 1] = nil end
      worst_item = chosen[size]
      worst = scores[worst_item]
    end
  end
  return chosen
end

-- the sources blended with `weights`, each scaled to its best candidate; with `leading`,
-- also which source gave each candidate its biggest share
local function blend(weights, leading)
  local scores, leading_share = {}, {}
  for index, source_scores in ipairs(sources) do
    local weight = weights[index]
    if weight > 0 and source_scores.top > 0 then
      local scale = weight / source_scores.top
      for item, score in pairs(source_scores.totals) do
        local share = score * scale
        scores[item] = (scores[item] or 0.0) + share
        if leading and (leading[item] == nil or share > leading_share[item]) then
          leading[item], leading_share[item] = index, share
        end
      end
    end
  end
  return scores
end

local leading, blended = {}, {}
if request.top > 0 then blended = blend(request.weights, leading) end

local reply = {}
for _, item in ipairs(best_of(blended, request.top)) do
  reply[#reply + 1] = item
  reply[#reply + 1] = string.format('%.17g', blended[item])
  reply[#reply + 1] = leading[item]
  reply[#reply + 1] = sources[leading[item]].best_voter[item]
end
local titles = {}
for _, voter in ipairs(voter_ids) do
  local title = redis.call('HGET', key('item_meta', voter), 'title')
  if title and title ~= '' then
    titles[#titles + 1] = voter
    titles[#titles + 1] = title
  end
end
local alone = {{}, {}}
if request.per_source > 0 then
  for index, scores in ipairs(sources) do
    for _, item in ipairs(best_of(scores.totals, request.per_source)) do
      alone[index][#alone[index] + 1] = item
      alone[index][#alone[index] + 1] = string.format('%.17g', scores.totals[item])
    end
  end
end
-- the self-tuning blend's shadow lists: what each judged weighting would have served
local weighting_lists = {}
for index, weights in ipairs(request.weightings) do
  weighting_lists[index] = best_of(blend(weights), request.weighting_top)
end
return {reply, alone[1], alone[2], titles, weighting_lists}
