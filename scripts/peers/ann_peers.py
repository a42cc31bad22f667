"""Annoy and hnswlib on the same clips and vectors as soundalike, for side-by-side recall and speed.

usage: ann_peers.py CLIPS_JSONL QUERIES_TXT MUSIC_LABELS_TXT [--no-notebook] [--truth FILE] [--build-threads N]
                    [--ef 10,12,...] [--search-k -1,1000,...]

CLIPS_JSONL is `soundalike ingest` output (JSON Lines, or its `--format json` array); QUERIES_TXT holds one video_id
per line (the eligible queries; `sample_queries.py` writes a seeded sample). Vectors: the mean of the de-quantized
frames (value / 255 * 4 - 2), 128-d, as soundalike's default index. Ground truth: exact cosine neighbours by
numpy, over the clips in blocks. Every query asks for its 10 neighbours, itself excluded, one at a time on one
thread. Prints one JSON object per configuration on stdout (peer, recall, label_precision, qps, queries, build_s,
build_threads, clips, and search_k or ef); progress and timings go to stderr.

Built for 1,000,000 clips in a few GB: the clips are read as a stream and only their mean vectors (and labels) are
kept, parsed from the text without json.loads (about 3 times faster; see load_clips).

--no-notebook   skip the notebook's 1280-d raw-byte Annoy index (too large to build quickly at 100,000 clips and
                more); without it the raw bytes are kept too (uint8, clips x 1280).
--truth FILE    also write the exact neighbours as JSON Lines, {"query": video_id, "neighbours": [video_ids]}, nearest
                first.
--build-threads N  threads for the Annoy and hnswlib builds (default: 2 from 300,000 clips on when the process may
                use 2 cores, else 1). Builds on more than one thread are not reproducible from the seed. Queries
                always run one at a time on one thread.
--ef, --search-k   the sweeps, comma-separated (defaults below).
--save-hnsw DIR    keep the hnswlib index and the query vectors in DIR, for `hnsw_time.py` to time again beside
                soundalike's runs (bench.py interleaves the two, so that a noisy moment falls on both alike).
"""

import os

# numpy's BLAS (the ground truth) uses as many threads as cores the process may run on, no more: under
# `taskset -c 1` one thread, rather than two threads sharing one core. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(len(os.sched_getaffinity(0))))

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

K = 10
EF = (10, 12, 14, 16, 20, 24, 32, 40, 64, 80, 160)
SEARCH_K = (-1, 1000, 2000, 4000, 8000, 16000, 32000)
# From this many clips on the builds may use two threads.
THREADS_FROM = 300_000

_ID, _LABELS, _EMBEDDING = b'{"video_id":"', b'"labels":[', b'"embedding":[['


def load_clips(path, keep_raw=False, chunk=4096):
    """Reads `soundalike ingest` output as a stream.

    Returns (video_ids, labels as tuples, mean vectors as float32 clips x 128, raw bytes as uint8 clips x
    frames*128 when keep_raw, else None). Only the means are kept, never a clips x frames x 128 float array.

    ingest writes one clip per line with its keys in a fixed order, so the fast path slices the line's text: the
    video_id, the labels, and the embedding's numbers, which numpy parses for a whole chunk of lines at once
    (`np.fromstring(..., sep=",")`). On the real music clips (16,565) that reads about 14,000 clips/s against
    4,500 with json.loads and np.asarray per line. A line in any other shape falls back to json.loads.
    """
    ids, labels, means, raws = [], [], [], []
    texts, rows = [], []

    def flush():
        if not texts:
            return
        values = np.fromstring(b",".join(texts).decode("ascii"), dtype=np.int32, sep=",")
        counts = np.asarray(rows)
        if values.size != counts.sum() * 128:
            sys.exit(f"{path}: an embedding row without 128 values near clip {ids[-1]}")
        frames = values.reshape(-1, 128)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        sums = np.add.reduceat(frames, starts, axis=0).astype(np.float64)
        means.append((sums / counts[:, None] / 255.0 * 4.0 - 2.0).astype(np.float32))
        if keep_raw:
            if (counts != counts[0]).any():
                sys.exit(f"{path}: clips with different frame counts; the raw-byte index needs one")
            raws.append(frames.astype(np.uint8).reshape(len(counts), -1))
        texts.clear()
        rows.clear()

    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line.endswith(b","):  # a line of a JSON array
                line = line[:-1]
            if line in (b"", b"[", b"]"):
                continue
            try:
                if not line.startswith(_ID):
                    raise ValueError
                end = line.index(b'"', len(_ID))
                video_id = line[len(_ID):end].decode()
                at = line.index(_LABELS, end) + len(_LABELS)
                end = line.index(b"]", at)
                clip_labels = tuple(int(x) for x in line[at:end].split(b",") if x)
                at = line.index(_EMBEDDING, end) + len(_EMBEDDING)
                end = line.rindex(b"]]")
                text = line[at:end]
                if b"\\" in line[: len(_ID) + 24] or not line.endswith(b"]]}"):
                    raise ValueError
            except ValueError:
                clip = json.loads(line)
                video_id, clip_labels = clip["video_id"], tuple(clip["labels"])
                text = ",".join(",".join(map(str, row)) for row in clip["embedding"]).encode()
                count = len(clip["embedding"])
            else:
                count = text.count(b"],[") + 1
                text = text.replace(b"],[", b",")
            if count == 0:
                sys.exit(f"{path}: line {number}: clip {video_id} has no embedding rows")
            ids.append(video_id)
            labels.append(clip_labels)
            texts.append(text)
            rows.append(count)
            if len(texts) == chunk:
                flush()
    flush()
    if not ids:
        sys.exit(f"{path}: no clips")
    mean = np.concatenate(means)
    return ids, labels, mean, (np.concatenate(raws) if keep_raw else None)


def exact_neighbours(unit, queries, k=K, budget=2**26):
    """The k nearest clips (cosine) of each query row, itself excluded, nearest first, and their similarities.

    unit holds unit-length vectors; queries are row numbers. Clips are scanned in blocks so that a block's
    similarities (queries x block, float32) stay within `budget` bytes; with the block's partition indices (int64)
    that is about 3 x budget of memory, 200 MB, at any number of clips.
    """
    queries = np.asarray(queries)
    qv = unit[queries]
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    block = max(k + 1, budget // (4 * max(1, len(queries))))
    rows = np.arange(len(queries))[:, None]
    for start in range(0, len(unit), block):
        sims = qv @ unit[start:start + block].T
        inside = np.flatnonzero((queries >= start) & (queries < start + sims.shape[1]))
        sims[inside, queries[inside] - start] = -np.inf
        if sims.shape[1] > k:
            top = np.argpartition(sims, -k, axis=1)[:, -k:]
        else:
            top = np.broadcast_to(np.arange(sims.shape[1]), (len(queries), sims.shape[1]))
        all_s = np.concatenate((best_s, sims[rows, top]), axis=1)
        all_i = np.concatenate((best_i, top + start), axis=1)
        keep = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
        best_s, best_i = all_s[rows, keep], all_i[rows, keep]
    order = np.argsort(-best_s, axis=1, kind="stable")
    return best_i[rows, order], best_s[rows, order]


def option(name, default, parse):
    if name in sys.argv:
        at = sys.argv.index(name)
        if at + 1 >= len(sys.argv):
            sys.exit(f"{name} needs a value")
        value = sys.argv[at + 1]
        del sys.argv[at:at + 2]
        return parse(value)
    return default


def log(message):
    print(f"ann_peers: {message}", file=sys.stderr, flush=True)


def main():
    truth_path = option("--truth", None, str)
    threads = option("--build-threads", None, int)
    save_hnsw = option("--save-hnsw", None, str)
    efs = option("--ef", EF, lambda v: tuple(int(x) for x in v.split(",")))
    search_ks = option("--search-k", SEARCH_K, lambda v: tuple(int(x) for x in v.split(",")))
    notebook = "--no-notebook" not in sys.argv
    args = [a for a in sys.argv[1:] if a != "--no-notebook"]
    if len(args) != 3 or any(a.startswith("--") for a in args):
        sys.exit(__doc__)
    clips_path, queries_path, music_path = args

    started = time.perf_counter()
    ids, labels, mean, raw = load_clips(clips_path, keep_raw=notebook)
    n = len(ids)
    log(f"{n} clips read in {time.perf_counter() - started:.1f} s")
    with open(music_path) as f:
        music = {int(line) for line in f if line.strip()} - {137}
    index_of = {v: i for i, v in enumerate(ids)}
    with open(queries_path) as f:
        names = [q.strip() for q in f if q.strip()]
    missing = [q for q in names if q not in index_of]
    if missing:
        sys.exit(f"{queries_path}: {len(missing)} queries not among the clips, such as {missing[0]}")
    queries = [index_of[q] for q in names]
    if threads is None:
        threads = 2 if n >= THREADS_FROM and len(os.sched_getaffinity(0)) >= 2 else 1

    started = time.perf_counter()
    unit = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    exact, _ = exact_neighbours(unit, queries)
    truth = {q: set(row.tolist()) for q, row in zip(queries, exact)}
    del unit
    log(f"exact neighbours of {len(queries)} queries in {time.perf_counter() - started:.1f} s")
    if truth_path:
        with open(truth_path, "w") as f:
            for q, row in zip(queries, exact):
                f.write(json.dumps({"query": ids[q], "neighbours": [ids[i] for i in row]}) + "\n")

    def score(name, answers, seconds, **extra):
        recall = sum(len(set(answers[q]) & truth[q]) for q in queries) / (K * len(queries))
        hits = sum(sum(1 for i in answers[q] if set(labels[i]) & set(labels[q]) & music) for q in queries)
        print(json.dumps({"peer": name, "recall": round(recall, 4), "label_precision": round(hits / (K * len(queries)), 4),
                          "qps": round(len(queries) / seconds), "queries": len(queries), **extra}), flush=True)

    import annoy
    started = time.perf_counter()
    index = annoy.AnnoyIndex(128, "angular")
    for i, v in enumerate(mean):
        index.add_item(i, v.tolist())
    index.set_seed(42)
    index.build(50, n_jobs=threads)
    build = round(time.perf_counter() - started, 2)
    log(f"annoy built in {build} s on {threads} thread(s)")
    for search_k in search_ks:
        started = time.perf_counter()
        answers = {q: [i for i in index.get_nns_by_item(q, K + 1, search_k=search_k) if i != q][:K] for q in queries}
        score("annoy 1.17, 50 trees", answers, time.perf_counter() - started, search_k=search_k, build_s=build,
              build_threads=threads, clips=n)
    index.unload()
    del index

    import hnswlib
    started = time.perf_counter()
    hnsw = hnswlib.Index(space="cosine", dim=128)
    hnsw.init_index(max_elements=n, ef_construction=200, M=16, random_seed=42)
    hnsw.set_num_threads(threads)
    hnsw.add_items(mean, np.arange(n), num_threads=threads)
    build = round(time.perf_counter() - started, 2)
    log(f"hnswlib built in {build} s on {threads} thread(s)")
    if save_hnsw:
        os.makedirs(save_hnsw, exist_ok=True)
        hnsw.save_index(os.path.join(save_hnsw, "hnsw.bin"))
        np.save(os.path.join(save_hnsw, "queries.npy"), mean[queries])
    hnsw.set_num_threads(1)
    for ef in efs:
        hnsw.set_ef(ef)
        started = time.perf_counter()
        answers = {}
        for q in queries:
            found, _ = hnsw.knn_query(mean[q:q + 1], k=K + 1, num_threads=1)
            answers[q] = [int(i) for i in found[0] if i != q][:K]
        score("hnswlib, M 16", answers, time.perf_counter() - started, ef=ef, build_s=build, build_threads=threads,
              clips=n)
    del hnsw

    if not notebook:
        return
    # The original notebook: raw bytes, 10 frames concatenated (1280-d), angular, 50 trees.
    started = time.perf_counter()
    nb = annoy.AnnoyIndex(raw.shape[1], "angular")
    for i, v in enumerate(raw):
        nb.add_item(i, v.tolist())
    nb.set_seed(42)
    nb.build(50, n_jobs=1)
    build = time.perf_counter() - started
    started = time.perf_counter()
    answers = {q: [i for i in nb.get_nns_by_item(q, K + 1) if i != q][:K] for q in queries}
    # Its recall is against its own exact neighbours on raw bytes; against ours it measures something else, so
    # only its label precision and speed are reported.
    seconds = time.perf_counter() - started
    hits = sum(sum(1 for i in answers[q] if set(labels[i]) & set(labels[q]) & music) for q in queries)
    print(json.dumps({"peer": "notebook: annoy 1280-d raw bytes, 50 trees", "label_precision": round(hits / (K * len(queries)), 4),
                      "qps": round(len(queries) / seconds), "build_s": round(build, 2)}), flush=True)


if __name__ == "__main__":
    main()
