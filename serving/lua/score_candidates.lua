-- Loaded after keys.lua and hidden_items.lua (StateReader joins them). Read-only.
-- Scores a user's (or a session's, or an item's) candidates where the data is: a dense
-- head's rows hold thousands of entries, and sending them to the service to be decoded and
-- summed there cost most of a personalised request. Only the top few come back.
--
-- Notation as in serving/scoring.py (the one description of the math): c_ij, n_i, next_ij;
-- votes v_i (co-occurrence) and v'_i (sequence) come from the caller.
--   co-occurrence  score_c(j) = sum_i v_i * s_ij^q    (s: count, cosine (with exponent
--                                                     alpha of n_i) or jaccard)
--   sequence       score_s(j) = sum_i v'_i * next_ij
--   neighbours     score_n(j) = sum over the heaviest neighbours u' that know j (if at least
--                                `support` of them do) of
--                                (sum of v_i over the voters u' shares) / sqrt(items u' knows)
--   blend          score(j)   = sum over sources of w * score(j) / max_j score(j)
-- Candidates hidden from the user (seen, unavailable) or (with a category) outside it are
-- dropped before scoring; excluded ones only when choosing (they still set a source's best,
-- as the caller's exclusions should not rescale the others). Ties go to the smaller item id. The reason of an item is the
-- source with the biggest weighted share (first source on a tie) and, in it, the voter with
-- the biggest term (first voter on a tie).
--
-- ARGV[1]: config JSON {keys, shared_field}
-- ARGV[2]: request JSON {user ('' for none), category ('' for any), depth (of the strongest
--          voter's rows), similarity, alpha (cosine's exponent of n_i),
--          top, per_source (0: none), weights: [cooccurrence, sequence, neighbours],
--          weightings: [[cooccurrence, sequence, neighbours], ...] judged by the self-tuning
--            blend,
--          weighting_top (how many of each weighting's best to return),
--          exponent (q: a co-occurrence term is v_i * s_ij^q),
--          neighbours: {count (how many neighbours vote; 0: none, not read), depth (users
--            read for the strongest voter), support (neighbours an item needs)},
--          voters: [[item, v, v'], ...] newest first (v' 0 past the sequence voters),
--          exclude: [item, ...]}
-- Returns {blended, per_source_cooccurrence, per_source_sequence, per_source_neighbours,
--          titles, weighting_lists}:
--   blended = {j, score, source index (1 co-occurrence, 2 sequence, 3 neighbours), voter
--              ('' for none), ...} best first
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

local order, listed, cooccurring = {}, {}, {}
local function read_row(row_key, row_depth, marked)
  local row = redis.call('ZREVRANGE', row_key, 0, row_depth - 1, 'WITHSCORES')
  for r = 1, #row, 2 do
    local j = row[r]
    if not listed[j] then
      listed[j] = true
      order[#order + 1] = j
    end
    if marked then marked[j] = true end
  end
  return row
end
local rows, next_rows = {}, {}
for k, voter in ipairs(voters) do
  if voter[2] > 0 then
    rows[k] = read_row(key('item_cooccurrence', voter[1]), depth_of(voter[2], 1), cooccurring)
  end
  if voter[3] > 0 then
    next_rows[k] = read_row(key('item_next', voter[1]), depth_of(voter[3], 2))
  end
end

-- Neighbours: the users who share the voters (each voter's newest users, item:{i}:users:
-- `depth` of them for the strongest voter, fewer in proportion to its vote for weaker ones,
-- as rows are read), each weighted by the co-occurrence votes of the voters they share over
-- the square root of how many items they know; the `count` heaviest whose interactions are
-- shared (one whose state expired and who came back new is in an item's users from before,
-- but under the new-user rule again) vote with that weight for each item of their history
-- but the voters themselves (newest first) that at least `support` of them have, through the
-- shared voter with the biggest vote.
local similar, via, neighbour_items = {}, {}, {}
local neighbours = request.neighbours
if neighbours.count > 0 and neighbours.depth > 0 then
  local candidates, via_vote = {}, {}
  for _, voter in ipairs(voters) do
    local vote = voter[2]
    if vote > 0 then
      local users_depth = math.ceil(neighbours.depth * vote / strongest[1])
      for _, other in ipairs(redis.call('ZREVRANGE', key('item_users', voter[1]), 0,
                                        users_depth - 1)) do
        if other ~= user then
          local shared_votes = similar[other]
          if shared_votes == nil then
            candidates[#candidates + 1] = other
            similar[other], via[other], via_vote[other] = vote, voter[1], vote
          else
            similar[other] = shared_votes + vote
            if vote > via_vote[other] then via[other], via_vote[other] = voter[1], vote end
          end
        end
      end
    end
  end
  -- the `count` heaviest (ties to the smaller id), kept in order as each user is weighed: a
  -- user lighter than the last of a full list costs one comparison (no sort of them all);
  -- one whose shared votes are below the last's weight is not weighed at all (a user who
  -- knows an item knows at least one: the votes bound the weight); and only one who would
  -- enter is asked whether they are shared
  local function heavier(a, b)
    if similar[a] ~= similar[b] then return similar[a] > similar[b] end
    return a < b
  end
  local heaviest = {}
  for _, other in ipairs(candidates) do
    local full = #heaviest >= neighbours.count
    if not full or similar[other] >= similar[heaviest[#heaviest]] then
      local known = redis.call('ZCARD', key('user_affinity', other))
      similar[other] = known > 0 and similar[other] / math.sqrt(known) or 0.0
      if similar[other] > 0 and (not full or heavier(other, heaviest[#heaviest]))
          and redis.call('HEXISTS', key('user_item_types', other), config.shared_field) == 1 then
        local at = #heaviest + 1
        while at > 1 and heavier(other, heaviest[at - 1]) do
          heaviest[at] = heaviest[at - 1]
          at = at - 1
        end
        heaviest[at] = other
        if #heaviest > neighbours.count then heaviest[#heaviest] = nil end
      end
    end
  end
  local voting = {}
  for _, voter in ipairs(voters) do voting[voter[1]] = true end
  local having = {}
  for _, other in ipairs(heaviest) do
    local items = {}
    for _, item in ipairs(redis.call('ZREVRANGE', key('user_recent', other), 0, -1)) do
      if not voting[item] then
        items[#items + 1] = item
        having[item] = (having[item] or 0) + 1
      end
    end
    neighbour_items[#neighbour_items + 1] = {other, items}
  end
  -- only what `support` of them have: one look-alike's own history is never shown as such
  for _, entry in ipairs(neighbour_items) do
    local supported = {}
    for _, item in ipairs(entry[2]) do
      if having[item] >= neighbours.support then
        supported[#supported + 1] = item
        if not listed[item] then
          listed[item] = true
          order[#order + 1] = item
        end
      end
    end
    entry[2] = supported
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

-- n of voters and of the kept candidates of their co-occurrence rows, for the similarity
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
  local similar_kept = {}
  for _, item in ipairs(kept) do
    if cooccurring[item] then similar_kept[#similar_kept + 1] = item end
  end
  for start = 1, #similar_kept, 4000 do  -- unpack() has a limit on its arguments
    read_counts({unpack(similar_kept, start, math.min(start + 3999, #similar_kept))})
  end
end

local kind, alpha, exponent = request.similarity, request.alpha, request.exponent
local function similarity(c_ij, n_i, n_j)
  if kind == 'count' then return c_ij end
  if kind == 'cosine' then
    if n_i <= 0 or n_j <= 0 then return 0.0 end
    -- plain cosine bit for bit as before (powers round differently, which moves ties)
    if alpha == 0.5 then return c_ij / math.sqrt(n_i * n_j) end
    return c_ij / (n_i ^ alpha * n_j ^ (1 - alpha))
  end
  local union = n_i + n_j - c_ij
  if union > 0 then return c_ij / union end
  return 0.0
end

-- A source as the blend reads it: per position k of `kept` its total (nil: not a
-- candidate of it), the voter of each candidate's biggest term, and its best total.
local function scored(totals, best_voter)
  local at, top = {}, 0.0
  for k = 1, #kept do
    local total = totals[kept[k]]
    if total ~= nil then
      at[k] = total
      if total > top then top = total end
    end
  end
  return {at = at, best_voter = best_voter, top = top}
end

-- one source from rows (see `scored`); a row's values are the terms themselves, or with
-- `similar` the c_ij of s_ij^q
local function source(vote_index, source_rows, similar)
  local totals, best, best_voter = {}, {}, {}
  for k, voter in ipairs(voters) do
    local vote = voter[vote_index]
    local row = source_rows[k]
    if row and vote > 0 then
      local n_i = user_counts[voter[1]] or 0.0
      for r = 1, #row, 2 do
        local j = row[r]
        if not dropped[j] then
          local value = tonumber(row[r + 1])
          if similar then
            value = similarity(value, n_i, user_counts[j] or 0.0)
            if exponent ~= 1 then value = value ^ exponent end
          end
          local term = vote * value
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
  return scored(totals, best_voter)
end

-- the neighbours' source: per candidate the sum of its neighbours' weights, and as its voter
-- the shared voter through which most of them came (the heavier's on a tie), or none ('')
-- when fewer than `support` came through it: naming a voter that one neighbour alone shares
-- with the user would say that that person has the item
local function neighbours_source()
  local totals, came_via, best_voter = {}, {}, {}
  for _, entry in ipairs(neighbour_items) do  -- heaviest first
    local other, items = entry[1], entry[2]
    local term, voter = similar[other], via[other]
    for _, j in ipairs(items) do
      if not dropped[j] then
        local total, counts = totals[j], came_via[j]
        if total == nil then
          totals[j], counts = term, {}
          came_via[j] = counts
        else
          totals[j] = total + term
        end
        counts[voter] = (counts[voter] or 0) + 1
        local best = best_voter[j]
        if best == nil or counts[voter] > counts[best] then best_voter[j] = voter end
      end
    end
  end
  for j, voter in pairs(best_voter) do
    if came_via[j][voter] < neighbours.support then best_voter[j] = '' end
  end
  return scored(totals, best_voter)
end

local sources = {source(2, rows, true), source(3, next_rows, false), neighbours_source()}

-- a source's factor in the blend with `weight`: its scores scaled to its best candidate (nil:
-- left out, as a source weighted 0 or with nothing to offer, or whose best is so small, as
-- counts decayed past ~1,000 half-lives are, that the factor would overflow to inf)
local function scale_of(source_scores, weight)
  if weight > 0 and source_scores.top > 0 then
    local scale = weight / source_scores.top
    if scale < math.huge then return scale end
  end
  return nil
end

-- The best `count` positions k of `scores` (scores[k] of kept[k]; nil: not a candidate), or
-- with `weights` of the sources blended with them (each position's blend computed as it is
-- met and written to `scores` only if chosen: one pass, one table for every weighting),
-- best first, never an excluded item. The chosen are kept in a heap with the worst on top,
-- so a candidate below it costs one comparison and the few better ones log(count) steps
-- each (an ordered insert cost up to count steps).
local function best_of(scores, count, weights)
  local heap, size, worst, worst_item = {}, 0, nil, nil
  if count <= 0 then return heap end
  local first_scale, second_scale, third_scale
  if weights then
    first_scale = scale_of(sources[1], weights[1])
    second_scale = scale_of(sources[2], weights[2])
    third_scale = scale_of(sources[3], weights[3])
  end
  local first_at, second_at, third_at = sources[1].at, sources[2].at, sources[3].at
  local function ahead(k, l)  -- kept[k] before kept[l]: the bigger score, on a tie the smaller id
    local k_score, l_score = scores[k], scores[l]
    if k_score ~= l_score then return k_score > l_score end
    return kept[k] < kept[l]
  end
  local function behind(p, q)  -- heap position p's candidate after q's
    return ahead(heap[q], heap[p])
  end
  for k = 1, #kept do
    local score
    if weights then
      local first_score, second_score, third_score = first_at[k], second_at[k], third_at[k]
      if first_scale and first_score ~= nil then score = first_score * first_scale end
      if second_scale and second_score ~= nil then
        score = (score or 0.0) + second_score * second_scale
      end
      if third_scale and third_score ~= nil then
        score = (score or 0.0) + third_score * third_scale
      end
    else
      score = scores[k]
    end
    if score ~= nil and (size < count or score > worst
                         or (score == worst and kept[k] < worst_item))
        and not excluded[kept[k]] then
      scores[k] = score
      local at
      if size < count then
        size = size + 1
        heap[size], at = k, size
        while at > 1 do  -- up while the parent is ahead of it
          local parent = math.floor(at / 2)
          if behind(parent, at) then break end
          heap[parent], heap[at] = heap[at], heap[parent]
          at = parent
        end
      else
        heap[1], at = k, 1
        while true do  -- down while a child is behind it
          local child = 2 * at
          if child > size then break end
          if child < size and behind(child + 1, child) then child = child + 1 end
          if behind(at, child) then break end
          heap[child], heap[at] = heap[at], heap[child]
          at = child
        end
      end
      worst, worst_item = scores[heap[1]], kept[heap[1]]
    end
  end
  table.sort(heap, ahead)
  return heap
end

-- the source that gave position k its biggest share of the blend with `weights` (the first
-- on a tie)
local function leading_source(k, weights)
  local leading, leading_share = nil, nil
  for index, source_scores in ipairs(sources) do
    local scale, score = scale_of(source_scores, weights[index]), source_scores.at[k]
    if scale and score ~= nil then
      local share = score * scale
      if leading == nil or share > leading_share then leading, leading_share = index, share end
    end
  end
  return leading
end

local reply = {}
if request.top > 0 then
  local blended = {}
  for _, k in ipairs(best_of(blended, request.top, request.weights)) do
    local leading = leading_source(k, request.weights)
    reply[#reply + 1] = kept[k]
    reply[#reply + 1] = string.format('%.17g', blended[k])
    reply[#reply + 1] = leading
    reply[#reply + 1] = sources[leading].best_voter[kept[k]]
  end
end
local titles = {}
for _, voter in ipairs(voter_ids) do
  local title = redis.call('HGET', key('item_meta', voter), 'title')
  if title and title ~= '' then
    titles[#titles + 1] = voter
    titles[#titles + 1] = title
  end
end
local alone = {{}, {}, {}}
if request.per_source > 0 then
  for index, source_scores in ipairs(sources) do
    for _, k in ipairs(best_of(source_scores.at, request.per_source)) do
      alone[index][#alone[index] + 1] = kept[k]
      alone[index][#alone[index] + 1] = string.format('%.17g', source_scores.at[k])
    end
  end
end
-- the self-tuning blend's shadow lists: what each judged weighting would have served
local weighting_lists, scores = {}, {}
for index, weights in ipairs(request.weightings) do
  local chosen = {}
  for _, k in ipairs(best_of(scores, request.weighting_top, weights)) do
    chosen[#chosen + 1] = kept[k]
  end
  weighting_lists[index] = chosen
end
return {reply, alone[1], alone[2], alone[3], titles, weighting_lists}
