#!/usr/bin/env python3
"""Recall@10 of recommend's default search against --exact, and label precision@10, on real bal_train.

usage: python3 scripts/measure_recall.py [BAL_TRAIN_DIR] [extra recommend args...]
Eligible queries: clips with a music label other than "Music" (137); label precision is the share of a query's
10 neighbours (itself excluded) carrying one of those labels (definition: ../shared/notes/audioset.md).
"""
import json, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target/release/soundalike"
data = sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared/audioset/real/audioset_v1_embeddings/bal_train")
extra = sys.argv[2:]
music = {int(l) for l in open(ROOT / "src/data/music_label_indices.txt")} - {137}
work = Path(tempfile.mkdtemp(prefix="soundalike-recall-"))
clips = work / "clips.jsonl"
subprocess.run([BIN, "ingest", "-q", data, "-o", clips], check=True)
labels = {}
for line in open(clips):
    c = json.loads(line)
    labels[c["video_id"]] = set(c["labels"])
started = time.perf_counter()
subprocess.run([BIN, "index", "-q", "--index", work / "idx", clips, *extra], check=True)
build = time.perf_counter() - started
queries = [v for v, l in labels.items() if l & music]
(work / "q.txt").write_text("\n".join(queries) + "\n")

def batch(*args):
    t = time.perf_counter()
    out = subprocess.run([BIN, "recommend", "--index", work / "idx", "--batch", work / "q.txt", "--json", *args],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines()], time.perf_counter() - t

import os
sk = os.environ.get("SEARCH_K")
approx, t_approx = batch(*(["--search-k", sk] if sk else []))
exact, t_exact = batch("--exact")
recall = sum(len({r["video_id"] for r in a["results"]} & {r["video_id"] for r in e["results"]})
             for a, e in zip(approx, exact)) / (10 * len(queries))
def precision(answers):
    hits = 0
    for a in answers:
        want = labels[a["query"]] & music
        hits += sum(1 for r in a["results"] if set(r["labels"]) & want)
    return hits / (10 * len(queries))
one = []
for q in queries[:50]:
    t = time.perf_counter()
    subprocess.run([BIN, "recommend", "--index", work / "idx", "--id", q, "--json"], check=True, capture_output=True)
    one.append(time.perf_counter() - t)
one.sort()
print(json.dumps({"clips": len(labels), "queries": len(queries), "build_s": round(build, 2),
                  "recall_at_10": round(recall, 4), "label_precision_default": round(precision(approx), 4),
                  "label_precision_exact": round(precision(exact), 4),
                  "batch_qps_default": round(len(queries) / t_approx), "batch_qps_exact": round(len(queries) / t_exact),
                  "one_shot_ms_median": round(one[len(one) // 2] * 1000, 2)}))
