#!/usr/bin/env bash
# Two builds of soundalike side by side on one machine, in alternating rounds, on a spread-out synthetic index
# (`synth --mix 2 --noise 16`, SIZE clips, default 200,000, built once with the defaults by the new binary: both
# read the same format):
#
# - by id: the wall time of `recommend --batch` of 20,000 clip ids of the index (one process, one thread's
#   session, as a script asks);
# - held out: the same for the 1,000 clips generated after the indexed ones, asked by their embeddings ten times
#   over (10,000 queries);
# - one-shot: the median wall time of 21 `recommend --id` processes, each a whole process (a shell's question).
#
# Prints each round and the medians, and the ratio new / old (below 1: the new build is faster). The batches are
# timed by wall clock around whole processes, so opening the index is in them (a few milliseconds).
#
#   scripts/compare_builds.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Needs ../shared/audioset (or $SOUNDALIKE_SHARED/audioset) and the synth example (cargo build
# --release --example synth), unless $WORK already holds synth-index.jsonl and held.jsonl. Data goes to
# ${WORK:-target/compare}. serve's id queries are scripts/serve_ids_ab.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1")
new=$(realpath "$2")
rounds=${3:-5}
size=${SIZE:-200000}
shared=${SOUNDALIKE_SHARED:-../shared}/audioset/real/audioset_v1_embeddings
work=${WORK:-target/compare}
mkdir -p "$work"

if [ ! -f "$work/synth-index.jsonl" ] || [ ! -f "$work/held.jsonl" ]; then
    "$(python3 scripts/cargo_target.py)/release/examples/synth" "$shared/bal_train" "$shared/eval" "$work/synth" \
        $((size + 1000)) \
        --music-only --tar --mix 2 --noise 16
    "$new" ingest -q "$work/synth/features.tar.gz" -o "$work/synth.jsonl"
    head -n "$size" "$work/synth.jsonl" > "$work/synth-index.jsonl"
    tail -n 1000 "$work/synth.jsonl" > "$work/held.jsonl"
fi
if [ ! -d "$work/synth.idx" ]; then
    "$new" index -q --index "$work/synth.idx" "$work/synth-index.jsonl"
fi
if [ ! -f "$work/ids.txt" ]; then
    # Every n-th clip's id: spread over the index, the same on every run.
    python3 -c 'import json,sys
lines = open(sys.argv[1]).readlines()
for line in lines[:: max(1, len(lines) // 20000)][:20000]: print(json.loads(line)["video_id"])' \
        "$work/synth-index.jsonl" > "$work/ids.txt"
fi
if [ ! -f "$work/held-10.jsonl" ]; then
    for _ in $(seq 10); do cat "$work/held.jsonl"; done > "$work/held-10.jsonl"
fi

seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" > /dev/null
    end=$(date +%s.%N)
    python3 -c "print(round($end - $start, 4))"
}
one_shot() {
    local times=() id
    for id in $(head -n 21 "$work/ids.txt"); do
        times+=("$(seconds "$1" recommend --index "$work/synth.idx" --id "$id" --json -q)")
    done
    python3 -c 'import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:]) * 1000, 2))' \
        "${times[@]}"
}

# One round untimed: the index's pages into the page cache, for both builds alike.
"$new" recommend --index "$work/synth.idx" --batch "$work/ids.txt" --json -q > /dev/null
declare -A results
for round in $(seq "$rounds"); do
    for which in old new; do
        bin=${!which}
        by_id=$(seconds "$bin" recommend --index "$work/synth.idx" --batch "$work/ids.txt" --json -q)
        held=$(seconds "$bin" recommend --index "$work/synth.idx" --batch "$work/held-10.jsonl" --json -q)
        shot=$(one_shot "$bin")
        echo "round $round $which: by id $by_id s, held out $held s (batches), one-shot $shot ms (median of 21)"
        results[$which-id]+="$by_id "
        results[$which-held]+="$held "
        results[$which-shot]+="$shot "
    done
done
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' $1; }
for key in id held shot; do
    o=$(median "${results[old-$key]}")
    n=$(median "${results[new-$key]}")
    echo "median $key: old $o, new $n, new/old $(python3 -c "print(round($n / $o, 3))")"
done
