#!/bin/bash
# Id queries against two `soundalike serve` binaries, alternated in one run (BENCHMARKS.md, "serve"; docs/bench-log.md,
# "serve on the open network"): each round starts each binary in turn on INDEX (no weights), warms it for 3 s, then runs
# `wrk -t1 -c16 --latency -s scripts/serve_ids.lua` for SECONDS, and prints requests/s and the latencies.
#
#   scripts/serve_ids_ab.sh BEFORE AFTER INDEX WORKDIR [ROUNDS] [SECONDS]
#
# WORKDIR holds ids.txt (one video_id of INDEX per line), which serve_ids.lua cycles through.
set -euo pipefail
BEFORE=$1 AFTER=$2 INDEX=$3 WORK=$4 ROUNDS=${5:-3} SECONDS_EACH=${6:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WORK"
for round in $(seq "$ROUNDS"); do
    for which in before after; do
        bin=$BEFORE
        [ "$which" = after ] && bin=$AFTER
        "$bin" serve --index "$INDEX" --listen 127.0.0.1:8184 -q 2>/dev/null &
        server=$!
        until curl -sf http://127.0.0.1:8184/healthz >/dev/null; do sleep 0.1; done
        wrk -t1 -c16 -d3s -s "$ROOT/scripts/serve_ids.lua" http://127.0.0.1:8184 >/dev/null
        out=$(wrk -t1 -c16 -d"${SECONDS_EACH}s" --latency -s "$ROOT/scripts/serve_ids.lua" http://127.0.0.1:8184)
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
        p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
        errors=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
        echo "round $round $which: $rps requests/s, p50 $p50, p99 $p99 ${errors:-(no errors)}"
        kill -TERM "$server"
        wait "$server" || true
    done
done
