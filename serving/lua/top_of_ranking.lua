-- A ranking's best entries that may be shown, in one call: the pages are read and filtered
-- here (hidden_items.lua: unavailable, or seen by the user; and the request's excluded ids),
-- so only what is served travels. Read-only.
-- KEYS[1]: the ranking (a zset). ARGV[1]: config JSON {keys}; ARGV[2]: JSON {user ('' for
-- none), n, scan_limit, exclude: [ids]}.
-- Returns {id, stored score, id, stored score, ...}, best first, at most n pairs, having read
-- at most scan_limit entries (pages double: users who saw much skip many): the bound on how
-- long one call holds Redis.
local request = cjson.decode(ARGV[2])
local excluded = {}
for _, item in ipairs(request.exclude) do excluded[item] = true end
local picked, start = {}, 0
local page = math.max(2 * request.n, 50)
while start < request.scan_limit do
  page = math.min(page, request.scan_limit - start)
  local entries = redis.call('ZRANGE', KEYS[1], start, start + page - 1, 'REV', 'WITHSCORES')
  local ids = {}
  for k = 1, #entries, 2 do ids[#ids + 1] = entries[k] end
  local hidden = hidden_items(request.user, ids)
  for k = 1, #entries, 2 do
    local item = entries[k]
    if not excluded[item] and not hidden[item] then
      picked[#picked + 1] = item
      picked[#picked + 1] = entries[k + 1]
      if #picked == 2 * request.n then return picked end
    end
  end
  if #entries < 2 * page then break end
  start, page = start + page, page * 2
end
return picked
