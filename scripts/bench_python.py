"""The Python package against hnswlib in one process, one thread: recommend_batch of N ids against hnswlib's
knn_query (one query at a time, and one batch call), recall@10 against the exact scan, and the cost of one
recommend(id=...) call.

usage: python scripts/bench_python.py INPUT WORKDIR [--queries 5000] [--rounds 3]

INPUT: AudioSet TFRecords (a folder, features.tar.gz), read through `soundalike.read_tfrecords` (e.g. bal_train
and eval, or the spread-out synthetic sets `examples/synth --mix 2` makes), or a .jsonl of clips as `soundalike
ingest` writes them. The index is built
with `projection="none"` and asked with `rerank=0`, the peers' work (VGGish's 128 dimensions, one mean vector a
clip, cosine); hnswlib (M 16, ef_construction 200) gets the same mean vectors. Needs numpy, hnswlib and the
soundalike package in the running interpreter. Prints one JSON object per line.
"""

import os

# One thread for every side: the engine's pool (the exact scan's batches) and any BLAS.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import hnswlib  # noqa: E402
import numpy as np  # noqa: E402

import soundalike  # noqa: E402

K = 10


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips")
    parser.add_argument("work")
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    if args.clips.endswith(".jsonl"):
        clips = [json.loads(line) for line in open(args.clips) if line.strip()]
    else:
        clips = list(soundalike.read_tfrecords(args.clips))
    ids = [c["video_id"] for c in clips]
    # The index's mean vectors: the mean of the de-quantized frames (value / 255 * 4 - 2, src/index/vector.rs).
    vectors = np.array([np.mean(np.asarray(c["embedding"], dtype=np.float32) / 255 * 4 - 2, axis=0) for c in clips])
    index_dir = work / "bench.idx"
    if not index_dir.exists():
        started = time.perf_counter()
        soundalike.build_index(index_dir, clips, projection="none")
        print(json.dumps({"soundalike build s": round(time.perf_counter() - started, 1)}), flush=True)
    index = soundalike.Index(index_dir)
    rng = np.random.default_rng(42)
    chosen = rng.choice(len(ids), size=min(args.queries, len(ids)), replace=False)
    queries = [ids[i] for i in chosen]
    print(json.dumps({"clips": len(ids), "queries": len(queries)}), flush=True)

    truth, _ = index.recommend_batch(queries, k=K, exact=True, rerank=0)
    truth = [list(row) for row in truth]

    def best_time(work):
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            out = work()
            times.append(time.perf_counter() - started)
        return min(times), out

    for ef in [10, 16, 24, 32, 48]:
        seconds, (found, _) = best_time(lambda: index.recommend_batch(queries, k=K, ef=ef, rerank=0))
        print(json.dumps({"side": "soundalike recommend_batch", "ef": ef, "recall": round(recall(found, truth), 4),
                          "qps": round(len(queries) / seconds)}), flush=True)

    hnsw = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    hnsw.init_index(max_elements=len(vectors), M=16, ef_construction=200, random_seed=42)
    hnsw.set_num_threads(1)
    started = time.perf_counter()
    hnsw.add_items(vectors, np.arange(len(vectors)), num_threads=1)
    print(json.dumps({"hnswlib build s (one thread)": round(time.perf_counter() - started, 1)}), flush=True)
    query_vectors = vectors[chosen]
    for ef in [10, 16, 24, 32, 48, 64]:
        hnsw.set_ef(ef + 1)

        def loop():
            return [hnsw.knn_query(query_vectors[q : q + 1], k=K + 1, num_threads=1)[0][0] for q in range(len(chosen))]

        seconds, labels = best_time(loop)
        found = [[ids[j] for j in row if j != chosen[q]][:K] for q, row in enumerate(labels)]
        print(json.dumps({"side": "hnswlib knn_query, one query a call", "ef": ef,
                          "recall": round(recall(found, truth), 4), "qps": round(len(chosen) / seconds)}), flush=True)
        seconds, _ = best_time(lambda: hnsw.knn_query(query_vectors, k=K + 1, num_threads=1))
        print(json.dumps({"side": "hnswlib knn_query, one batch call", "ef": ef, "qps": round(len(chosen) / seconds)}),
              flush=True)

    # One question a call: the whole call (arguments, a read transaction, the search, the dicts) against the
    # same question's share of a batch.
    few = queries[:1000]
    seconds, _ = best_time(lambda: [index.recommend(id=q, k=K, ef=16, rerank=0) for q in few])
    batch, _ = best_time(lambda: index.recommend_batch(few, k=K, ef=16, rerank=0))
    print(json.dumps({"recommend(id=...) us per call": round(seconds / len(few) * 1e6, 1),
                      "recommend_batch us per query": round(batch / len(few) * 1e6, 1),
                      "overhead us per call": round((seconds - batch) / len(few) * 1e6, 1)}), flush=True)


if __name__ == "__main__":
    main()
