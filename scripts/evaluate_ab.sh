#!/bin/bash
# Two builds' `evaluate`, alternated round by round on one core (BENCHMARKS.md, "A new song's query (held out)
# against the peers", the default at 1,000,000 clips re-measured): each prints, per search of its one process,
# the breadth walked, recall@10 and queries/s.
#
#   scripts/evaluate_ab.sh BEFORE AFTER INDEX QUERIES [ROUNDS] [-- EVALUATE ARGS...]
#
# QUERIES is a JSON Lines file of held-out clips (or a count of sampled ids); the arguments after `--` go to
# `evaluate` (issue 34's run: `-- --ef 96 --ef 96 --rerank 0` on a `--projection none` index, the default walk
# against the same breadth asked twice explicitly).
set -euo pipefail
BEFORE=$1 AFTER=$2 INDEX=$3 QUERIES=$4 ROUNDS=${5:-3}
shift $(($# < 5 ? $# : 5))
[ "${1:-}" = -- ] && shift
for round in $(seq "$ROUNDS"); do
    for which in before after; do
        bin=$BEFORE
        [ "$which" = after ] && bin=$AFTER
        taskset -c 1 "$bin" evaluate --index "$INDEX" --queries "$QUERIES" "$@" --json -q | python3 -c '
import json, sys
reports = json.load(sys.stdin)
reports = reports if isinstance(reports, list) else [reports]
print(sys.argv[1] + ": " + "; ".join(
    ("default" if r.get("default") else "ef %s" % r.get("ef")) + " (walks %s) recall %.4f, %d q/s" % (r.get("walk"), r["recall"], r["qps"])
    for r in reports))' "round $round $which"
    done
done
