#!/bin/bash
# A mixed soak of `soundalike serve` (BENCHMARKS.md, "serve"): questions by id from wrk and uploads at once for
# SECONDS, the server's resident memory sampled every 10 s.
#
#   scripts/serve_soak.sh BIN INDEX WEIGHTS PCA BODY SECONDS
#
# Run it where ids.txt (video_ids of the index, one per line) is, for scripts/serve_ids.lua. BODY is a
# multipart upload as scripts/serve_uploads.sh describes. Prints wrk's summary, the uploads' and the RSS samples
# (MB) with their first, largest and last.
set -euo pipefail
BIN=$1 INDEX=$2 WEIGHTS=$3 PCA=$4 BODY=$5 SECONDS_=$6
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$BIN" serve --index "$INDEX" --weights "$WEIGHTS" --pca "$PCA" --listen 127.0.0.1:8184 -q 2>soak-serve.err &
server=$!
until curl -sf http://127.0.0.1:8184/healthz >/dev/null; do sleep 0.2; done
(while kill -0 $server 2>/dev/null; do
    awk '/VmRSS/ { printf "%d\n", $2 / 1024 }' /proc/$server/status
    sleep 10
done) >soak-rss.log &
sampler=$!
wrk -t1 -c8 -d"${SECONDS_}s" --latency -s "$ROOT/scripts/serve_ids.lua" http://127.0.0.1:8184 >soak-wrk.log &
ids=$!
python3 "$ROOT/scripts/serve_load.py" "$BODY" 4 "$SECONDS_" honour http://127.0.0.1:8184/api/recommend
wait $ids
grep -E "requests in|Requests/sec|99%|Non-2xx|Socket errors" soak-wrk.log
kill -TERM $server; wait $server || true
kill $sampler 2>/dev/null || true
echo "RSS MB every 10 s: $(tr '\n' ' ' <soak-rss.log)"
awk 'NR == 1 { first = $1 } { if ($1 > max) max = $1; last = $1 } END { printf "RSS MB: first %d, largest %d, last %d\n", first, max, last }' soak-rss.log
