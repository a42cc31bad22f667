-- wrk script for BENCHMARKS.md ("serve"): GET /api/recommend?id=ID, cycling through the ids in ./ids.txt
-- (one per line), so that the answers are not one clip's over and over.
local ids = {}
for line in io.lines("ids.txt") do ids[#ids + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/recommend?id=" .. ids[(i % #ids) + 1])
end
