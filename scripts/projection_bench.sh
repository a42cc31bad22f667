#!/usr/bin/env bash
# The held-out label precision of the projection and the re-rank (issue 13), as in BENCHMARKS.md's "Label
# precision" table and docs/bench-log.md's "Projection and re-rank" section. Needs the release binary and the real
# bal_train split; about a minute on two cores.
#
#   bash scripts/projection_bench.sh [AUDIOSET_DIR] [WORK_DIR]
#
# bal_train's music clips are split by line (ingest's order): the odd lines fit a projection
# (`index --projection learn`), the even lines are indexed with it (`--projection A.idx`) and queried, every
# clip with a music label other than 137 (`evaluate --queries all`): none of them took part in the fit. Then
# the other way round: the even lines fit, the odd lines are indexed and asked. The eval
# files at hand are held-out queries too (`evaluate --queries FILE`), against the even half and, for the
# compiled default (fit on all of bal_train), against the whole of bal_train.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$(python3 "$root/scripts/cargo_target.py")/release/soundalike"
data=${1:-$root/../shared/audioset/real/audioset_v1_embeddings}
work=${2:-$root/target/projection-bench}
mkdir -p "$work"
cd "$work"
"$bin" ingest -q "$data/bal_train" -o bal.jsonl
"$bin" ingest -q "$data/eval" -o eval.jsonl
awk 'NR % 2 == 1' bal.jsonl > A.jsonl
awk 'NR % 2 == 0' bal.jsonl > B.jsonl
"$bin" index -q --index A.idx --projection learn A.jsonl
"$bin" index -q --index B-none.idx --projection none B.jsonl
"$bin" index -q --index B-A.idx --projection A.idx B.jsonl
"$bin" index -q --index B.idx --projection learn B.jsonl
"$bin" index -q --index A-none.idx --projection none A.jsonl
"$bin" index -q --index A-B.idx --projection B.idx A.jsonl
"$bin" index -q --index bal-none.idx --projection none bal.jsonl
"$bin" index -q --index bal-default.idx bal.jsonl
report() { # index, queries, rerank
    "$bin" evaluate -q --index "$1" --queries "$2" --rerank "$3" --ef 16 --json |
        python3 -c 'import json, sys
name, queries, rerank = sys.argv[1:4]
for r in json.load(sys.stdin):
    print("%-16s queries %-10s rerank %2s  %-5s  n %5d  recall@10 %.4f  label prec@10 %.4f  p50 %.3f ms  in fit %s" % (
        name, queries, rerank, r["search"], r["queries"], r["recall"], r["label_precision"],
        r["latency_ms"]["p50"], r["queries_in_projection_fit"]))' "$1" "$(basename "$2")" "$3"
}
for rerank in 0 20; do
    for idx in B-none.idx B-A.idx; do report "$idx" all "$rerank"; report "$idx" eval.jsonl "$rerank"; done
    for idx in A-none.idx A-B.idx; do report "$idx" all "$rerank"; done
    for idx in bal-none.idx bal-default.idx; do report "$idx" all "$rerank"; report "$idx" eval.jsonl "$rerank"; done
done
