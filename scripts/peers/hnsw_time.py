"""Times hnswlib's query loop on an index and queries saved by `ann_peers.py --save-hnsw DIR`.

usage: hnsw_time.py DIR --ef 10,12,...

The same loop as ann_peers.py (one query at a time, 11 neighbours asked so that the query itself can be dropped,
one thread), without the build: bench.py runs it in rounds between soundalike's batches, so that both sides are
timed in the same moments of a noisy machine. Recall is not measured here (the answers are those ann_peers.py
scored). Prints one JSON object per ef: {"ef": N, "qps": N}. The index's loading is not timed, as in ann_peers.py.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import hnswlib  # noqa: E402
import numpy as np  # noqa: E402

K = 10


def main():
    if len(sys.argv) != 4 or sys.argv[2] != "--ef":
        sys.exit(__doc__)
    folder, efs = sys.argv[1], [int(x) for x in sys.argv[3].split(",")]
    queries = np.load(os.path.join(folder, "queries.npy"))
    hnsw = hnswlib.Index(space="cosine", dim=queries.shape[1])
    hnsw.load_index(os.path.join(folder, "hnsw.bin"))
    hnsw.set_num_threads(1)
    for ef in efs:
        hnsw.set_ef(ef)
        started = time.perf_counter()
        for q in range(len(queries)):
            hnsw.knn_query(queries[q:q + 1], k=K + 1, num_threads=1)
        print(json.dumps({"ef": ef, "qps": round(len(queries) / (time.perf_counter() - started))}), flush=True)


if __name__ == "__main__":
    main()
