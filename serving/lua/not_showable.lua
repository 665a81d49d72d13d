-- Which of the given items must not be shown (see hidden_items.lua), read-only.
-- ARGV[1]: config JSON {keys}; ARGV[2]: user id ('' for none); ARGV[3..]: item ids.
-- Returns the hidden item ids.
local candidates = {}
for k = 3, #ARGV do candidates[#candidates + 1] = ARGV[k] end
local hidden = {}
for item in pairs(hidden_items(ARGV[2], candidates)) do hidden[#hidden + 1] = item end
return hidden
