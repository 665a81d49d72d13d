-- The prelude of every script: ARGV[1] is a config JSON whose `keys` are the templates of
-- streamrec.contract.keys (RedisKeys.templates()): fixed keys as fields of K, per-id keys built
-- by key(name, id), so no script spells a key.
local config = cjson.decode(ARGV[1])
local K = config.keys

local function key(name, id)
  local template = K[name]
  return template[1] .. id .. template[2]
end
