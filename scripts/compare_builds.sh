#!/usr/bin/env bash
# Two builds of soundalike side by side on one machine, in alternating rounds: evaluate's queries per second on
# a spread-out synthetic index of 100,000 clips (1,000 sampled queries by id, and 1,000 held-out clips asked by
# their embeddings), and the wall time of `recommend --batch` of every clip id of bal_train on its index. Prints
# each round and the medians, and the ratio new / old.
#
#   scripts/compare_builds.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Needs ../shared/audioset (or $SOUNDALIKE_SHARED/audioset) and the synth example (cargo build
# --release --example synth). Data goes to ${WORK:-target/compare}; the indexes are built once, by the new
# binary (both read the same format).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1")
new=$(realpath "$2")
rounds=${3:-5}
shared=${SOUNDALIKE_SHARED:-../shared}/audioset/real/audioset_v1_embeddings
work=${WORK:-target/compare}
mkdir -p "$work"

if [ ! -d "$work/synth.idx" ]; then
    "$(python3 scripts/cargo_target.py)/release/examples/synth" "$shared/bal_train" "$shared/eval" "$work/synth" 101000 \
        --music-only --tar --mix 2 --noise 16
    "$new" ingest -q "$work/synth/features.tar.gz" -o "$work/synth.jsonl"
    # The first 100,000 clips are indexed; the last 1,000 are held out.
    head -n 100000 "$work/synth.jsonl" > "$work/synth-index.jsonl"
    tail -n 1000 "$work/synth.jsonl" > "$work/held.jsonl"
    "$new" index -q --index "$work/synth.idx" "$work/synth-index.jsonl"
fi
if [ ! -d "$work/bal.idx" ]; then
    "$new" ingest -q "$shared/bal_train" -o "$work/bal.jsonl"
    "$new" index -q --index "$work/bal.idx" "$work/bal.jsonl"
    python3 -c 'import json,sys
for line in open(sys.argv[1]): print(json.loads(line)["video_id"])' "$work/bal.jsonl" > "$work/bal-ids.txt"
fi

qps() { "$1" evaluate --index "$work/synth.idx" "${@:2}" --json -q | python3 -c 'import json,sys; print(json.load(sys.stdin)["qps"])'; }
batch() {
    local start end
    start=$(date +%s.%N)
    "$1" recommend --index "$work/bal.idx" --batch "$work/bal-ids.txt" --json -q > /dev/null
    end=$(date +%s.%N)
    python3 -c "print(round($end - $start, 3))"
}

declare -A results
for round in $(seq "$rounds"); do
    for which in old new; do
        bin=${!which}
        by_id=$(qps "$bin" --queries 1000)
        held=$(qps "$bin" --queries "$work/held.jsonl")
        seconds=$(batch "$bin")
        echo "round $round $which: evaluate by id $by_id q/s, held out $held q/s, batch of bal_train $seconds s"
        results[$which-id]+="$by_id "
        results[$which-held]+="$held "
        results[$which-batch]+="$seconds "
    done
done
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' $1; }
for key in id held batch; do
    o=$(median "${results[old-$key]}")
    n=$(median "${results[new-$key]}")
    echo "median $key: old $o, new $n, new/old $(python3 -c "print(round($n / $o, 3))")"
done
