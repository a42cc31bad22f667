"""Annoy and hnswlib on the same clips and vectors as soundalike, for side-by-side recall and speed.

usage: ann_peers.py CLIPS_JSONL QUERIES_TXT MUSIC_LABELS_TXT [--no-notebook]

CLIPS_JSONL is `soundalike ingest` output; QUERIES_TXT holds one video_id per line (the eligible queries).
Vectors: the mean of the de-quantized frames (value / 255 * 4 - 2), 128-d, as soundalike's default index.
Ground truth: exact cosine neighbours by numpy. Every query asks for its 10 neighbours, itself excluded,
one at a time on one thread. Prints one JSON object per configuration on stdout. --no-notebook skips the
notebook's 1280-d raw-byte Annoy index (too large to build quickly at 100,000 clips and more).
"""

import json
import sys
import time

import numpy as np


def load(path):
    ids, labels, frames = [], [], []
    with open(path) as f:
        for line in f:
            clip = json.loads(line)
            ids.append(clip["video_id"])
            labels.append(set(clip["labels"]))
            frames.append(np.asarray(clip["embedding"], dtype=np.uint8))
    return ids, labels, np.asarray(frames, dtype=np.float32)


def main():
    clips_path, queries_path, music_path = sys.argv[1:4]
    ids, labels, frames = load(clips_path)
    music = {int(line) for line in open(music_path)} - {137}
    index_of = {v: i for i, v in enumerate(ids)}
    queries = [index_of[q.strip()] for q in open(queries_path) if q.strip()]
    mean = (frames / 255.0 * 4.0 - 2.0).mean(axis=1)
    unit = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    k = 10

    # Exact neighbours (cosine), itself excluded.
    truth = {}
    sims = unit[queries] @ unit.T
    for row, q in enumerate(queries):
        sims[row, q] = -np.inf
        truth[q] = set(np.argpartition(-sims[row], k)[:k].tolist())

    def score(name, answers, seconds, **extra):
        recall = sum(len(set(answers[q]) & truth[q]) for q in queries) / (k * len(queries))
        hits = sum(sum(1 for n in answers[q] if labels[n] & labels[q] & music) for q in queries)
        print(json.dumps({"peer": name, "recall": round(recall, 4), "label_precision": round(hits / (k * len(queries)), 4),
                          "qps": round(len(queries) / seconds), "queries": len(queries), **extra}), flush=True)
        return recall

    import annoy
    started = time.perf_counter()
    index = annoy.AnnoyIndex(128, "angular")
    for i, v in enumerate(mean):
        index.add_item(i, v.tolist())
    index.set_seed(42)
    index.build(50, n_jobs=1)
    build = time.perf_counter() - started
    for search_k in (-1, 1000, 2000, 3000, 5000, 8000):
        started = time.perf_counter()
        answers = {q: [n for n in index.get_nns_by_item(q, k + 1, search_k=search_k) if n != q][:k] for q in queries}
        score("annoy 1.17, 50 trees", answers, time.perf_counter() - started, search_k=search_k, build_s=round(build, 2))

    import hnswlib
    started = time.perf_counter()
    hnsw = hnswlib.Index(space="cosine", dim=128)
    hnsw.init_index(max_elements=len(ids), ef_construction=200, M=16, random_seed=42)
    hnsw.set_num_threads(1)
    hnsw.add_items(mean, np.arange(len(ids)))
    build = time.perf_counter() - started
    for ef in (20, 40, 80, 160):
        hnsw.set_ef(ef)
        started = time.perf_counter()
        answers = {}
        for q in queries:
            found, _ = hnsw.knn_query(mean[q:q + 1], k=k + 1)
            answers[q] = [int(n) for n in found[0] if n != q][:k]
        score("hnswlib, M 16", answers, time.perf_counter() - started, ef=ef, build_s=round(build, 2))

    if "--no-notebook" in sys.argv:
        return
    # The original notebook: raw bytes, 10 frames concatenated (1280-d), angular, 50 trees.
    raw = frames.reshape(len(ids), -1)
    started = time.perf_counter()
    notebook = annoy.AnnoyIndex(raw.shape[1], "angular")
    for i, v in enumerate(raw):
        notebook.add_item(i, v.tolist())
    notebook.set_seed(42)
    notebook.build(50, n_jobs=1)
    build = time.perf_counter() - started
    started = time.perf_counter()
    answers = {q: [n for n in notebook.get_nns_by_item(q, k + 1) if n != q][:k] for q in queries}
    # Its recall is against its own exact neighbours on raw bytes; against ours it measures something else, so
    # only its label precision and speed are reported.
    seconds = time.perf_counter() - started
    hits = sum(sum(1 for n in answers[q] if labels[n] & labels[q] & music) for q in queries)
    print(json.dumps({"peer": "notebook: annoy 1280-d raw bytes, 50 trees", "label_precision": round(hits / (k * len(queries)), 4),
                      "qps": round(len(queries) / seconds), "build_s": round(build, 2)}), flush=True)


if __name__ == "__main__":
    main()
