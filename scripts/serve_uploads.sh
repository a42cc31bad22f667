#!/bin/bash
# Uploads to `soundalike serve` against `embed` on the same cores, side by side (BENCHMARKS.md, "serve").
#
#   scripts/serve_uploads.sh BIN INDEX WEIGHTS PCA WORKDIR ROUNDS
#
# WORKDIR holds song10.wav (10 s, 44.1 kHz stereo), copy01.wav .. copy48.wav (copies of it) and body.bin (a
# multipart form with the file in `audio`, boundary soundalikebench0123456789). Each round times `embed` of 12, 24
# and 48 copies, each in one process (36 files over the difference between 48 and 12 is the files per second
# without the weights' loading), then 8 clients (4x the cores) posting body.bin to the server for 30 s, waiting
# Retry-After on a 503.
set -euo pipefail
BIN=$1 INDEX=$2 WEIGHTS=$3 PCA=$4 WORK=$5 ROUNDS=${6:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$WORK"
embed_seconds() {
    local files=("${@}")
    local t0=$(date +%s.%N)
    "$BIN" embed "${files[@]}" --weights "$WEIGHTS" --pca "$PCA" -q -o /dev/null
    echo "$(date +%s.%N) - $t0" | bc
}
for round in $(seq "$ROUNDS"); do
    t12=$(embed_seconds copy0[1-9].wav copy1[0-2].wav)
    t24=$(embed_seconds copy0[1-9].wav copy1[0-9].wav copy2[0-4].wav)
    t48=$(embed_seconds copy*.wav)
    echo "round $round: embed 12 files ${t12} s, 24 files ${t24} s, 48 files ${t48} s: $(echo "36 / ($t48 - $t12)" | bc -l | cut -c1-5) files/s without loading"
    "$BIN" serve --index "$INDEX" --weights "$WEIGHTS" --pca "$PCA" --listen 127.0.0.1:8183 -q 2>serve.err &
    server=$!
    # Answered once the weights are loaded (the port is bound before).
    until curl -sf http://127.0.0.1:8183/healthz >/dev/null; do sleep 0.2; done
    python3 "$ROOT/scripts/serve_load.py" body.bin 8 30 honour http://127.0.0.1:8183/api/recommend
    kill -TERM $server; wait $server || true
done
