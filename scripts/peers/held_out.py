"""A new song's query: soundalike against its peers on held-out clips, the same vectors and queries (issue 22).

usage: held_out.py CLIPS_JSONL HELD_JSONL --index DIR [--index-default DIR] [--soundalike BIN]
                   [--ef 16,24,32,48,64,96,128] [--rounds 3] [--peers hnswlib,voyager,usearch,annoy]
                   [--build-threads 2] [--cache DIR] [--out FILE]

CLIPS_JSONL is what the index was built from (`soundalike ingest` output) and HELD_JSONL clips of the same kind
that are NOT in it: every query is a held-out clip asked by its embedding, the case of every upload and new song.
--index is soundalike's index of CLIPS_JSONL built with `--projection none` (its vectors are the peers': the mean of
the de-quantized frames, 128-d, cosine); --index-default, if given, one built with the defaults (the label model
and the re-rank), measured by its own recall only.

The peers are built once (timed; on --build-threads threads): hnswlib and Voyager (M 16, ef_construction 200),
usearch (connectivity 16, expansion_add 200), Annoy (100 trees, angular). Then, in --rounds rounds, each engine
answers every held-out query for its 10 nearest clips, one query at a time on one thread:
- soundalike: `evaluate --queries HELD --ef ... --rerank 0 --json` (in-process, the index open; its own exact scan
  is the ground truth, the same cosine on the same vectors);
- each peer by its C++ batch call on one thread (`knn_query(Q, num_threads=1)`, `query(Q, num_threads=1)`,
  `search(Q, threads=1)`; Annoy has none) and by a Python loop of single queries, as a notebook would.
A round runs every engine before the next round, so a noisy moment on this shared machine falls on all alike;
queries/s are medians over the rounds. Recall@10 of the peers is against numpy's exact cosine neighbours.

With --cache DIR, the clips and queries as read, the exact neighbours and hnswlib's index are kept in DIR
(named by the input files' names and sizes) and reused by the next run on the same files: at 1,000,000 clips
they take 12 minutes to make, and a rerun of the rounds on a quieter moment needs none of it again.

Prints Markdown tables on stdout (every configuration; the fastest of each at recall@10 >= 0.95; each soundalike
row beside hnswlib's C++ batch at the same recall, interpolated between its two breadths around it, and their
ratio) and, with --out, one JSON object per configuration.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ann_peers import load_clips, option  # noqa: E402
from cargo_target import target_dir  # noqa: E402

K = 10
HNSW_M, EF_CONSTRUCTION, ANNOY_TREES = 16, 200, 100
ANNOY_SEARCH_K = (1000, 4000, 16000, 64000)


def log(message):
    print(f"held_out: {message}", file=sys.stderr, flush=True)


def recall(found, truth):
    return float(np.mean([len(set(f[:K]) & t) / K for f, t in zip(found, truth)]))


class Peer:
    """One peer: `build` once, then `batch(param)` and `single(param)` each return the answers' row numbers."""

    def __init__(self, name, params):
        self.name, self.params = name, params


def hnswlib_peer(data, threads, cache=None):
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    if cache is not None and cache.exists():
        index.load_index(str(cache), max_elements=len(data))
    else:
        index.init_index(max_elements=len(data), M=HNSW_M, ef_construction=EF_CONSTRUCTION, random_seed=100)
        index.add_items(data, np.arange(len(data)), num_threads=threads)
        if cache is not None:
            index.save_index(str(cache))
    index.set_num_threads(1)

    def batch(queries, ef):
        index.set_ef(ef)
        return index.knn_query(queries, k=K, num_threads=1)[0]

    def single(queries, ef):
        index.set_ef(ef)
        return [index.knn_query(q, k=K, num_threads=1)[0][0] for q in queries]

    return batch, single


def voyager_peer(data, threads):
    import voyager

    index = voyager.Index(voyager.Space.Cosine, num_dimensions=data.shape[1], M=HNSW_M,
                          ef_construction=EF_CONSTRUCTION, random_seed=100)
    index.add_items(data, np.arange(len(data)), num_threads=threads)

    def batch(queries, ef):
        return index.query(queries, k=K, num_threads=1, query_ef=ef)[0]

    def single(queries, ef):
        return [index.query(q, k=K, query_ef=ef)[0] for q in queries]

    return batch, single


def usearch_peer(data, threads):
    from usearch.index import Index

    index = Index(ndim=data.shape[1], metric="cos", connectivity=HNSW_M, expansion_add=EF_CONSTRUCTION)
    index.add(np.arange(len(data)), data, threads=threads)

    def batch(queries, ef):
        index.expansion_search = ef
        return index.search(queries, K, threads=1).keys

    def single(queries, ef):
        index.expansion_search = ef
        return [index.search(q, K).keys for q in queries]

    return batch, single


def annoy_peer(data, threads):
    from annoy import AnnoyIndex

    index = AnnoyIndex(data.shape[1], "angular")
    index.set_seed(100)
    for i, row in enumerate(data):
        index.add_item(i, row)
    index.build(ANNOY_TREES, n_jobs=threads)

    def single(queries, search_k):
        return [index.get_nns_by_vector(q, K, search_k=search_k) for q in queries]

    return None, single


BUILDERS = {"hnswlib": hnswlib_peer, "voyager": voyager_peer, "usearch": usearch_peer, "annoy": annoy_peer}


def exact_outside(data, queries, block=1 << 16):
    """Each query's K nearest clips by cosine, exact: the queries are not among the clips, so none is excluded."""
    qunit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best_s = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), K), -1, dtype=np.int64)
    rows = np.arange(len(queries))[:, None]
    for start in range(0, len(data), block):
        part = data[start:start + block]
        sims = qunit @ (part / np.linalg.norm(part, axis=1, keepdims=True)).T
        top = np.argpartition(sims, -K, axis=1)[:, -K:]
        all_s = np.concatenate((best_s, sims[rows, top]), axis=1)
        all_i = np.concatenate((best_i, top + start), axis=1)
        keep = np.argpartition(-all_s, K - 1, axis=1)[:, :K]
        best_s, best_i = all_s[rows, keep], all_i[rows, keep]
    return [set(row.tolist()) for row in best_i]


def soundalike_round(binary, index, held, efs, rerank):
    """One `evaluate` process: its reports (the default search first, then each --ef)."""
    cmd = [binary, "evaluate", "--index", index, "--queries", held, "--json", "-q"]
    if rerank is not None:
        cmd += ["--rerank", str(rerank)]
    for ef in efs:
        cmd += ["--ef", str(ef)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{run.stderr}")
    reports = json.loads(run.stdout)
    return reports if isinstance(reports, list) else [reports]


def main():
    index = option("--index", None, str)
    index_default = option("--index-default", None, str)
    binary = option("--soundalike", str(target_dir() / "release" / "soundalike"), str)
    efs = option("--ef", (16, 24, 32, 48, 64, 96, 128), lambda v: tuple(int(x) for x in v.split(",")))
    rounds = option("--rounds", 3, int)
    peers = option("--peers", tuple(BUILDERS), lambda v: tuple(x for x in v.split(",") if x))
    threads = option("--build-threads", 2, int)
    out = option("--out", None, str)
    cache_dir = option("--cache", None, Path)
    args = sys.argv[1:]
    if len(args) != 2 or index is None or any(a.startswith("--") for a in args):
        sys.exit(__doc__)
    clips_path, held_path = args
    unknown = [p for p in peers if p not in BUILDERS]
    if unknown:
        sys.exit(f"unknown peer {unknown[0]}: one of {', '.join(BUILDERS)}")

    started = time.perf_counter()
    cached = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tag = "-".join(f"{Path(p).name}.{os.path.getsize(p)}" for p in (clips_path, held_path))
        cached = cache_dir / f"{tag}.npz"
    if cached is not None and cached.exists():
        saved = np.load(cached)
        data, queries = saved["data"], saved["queries"]
        truth = [set(row.tolist()) for row in saved["truth"]]
        log(f"{len(data)} clips, {len(queries)} held-out queries and their neighbours read from {cached}")
    else:
        _, _, data, _ = load_clips(clips_path)
        _, _, queries, _ = load_clips(held_path)
        log(f"{len(data)} clips and {len(queries)} held-out queries read in {time.perf_counter() - started:.1f} s")
        truth = exact_outside(data, queries)
        log(f"exact neighbours in {time.perf_counter() - started:.1f} s")
        if cached is not None:
            np.savez(cached, data=data, queries=queries, truth=np.array([sorted(t) for t in truth]))

    # evaluate asks the held-out clips with a music label other than Music (137), whose hits' labels it can judge:
    # the peers answer the same ones, so that both recalls are over the same queries.
    music_list = Path(__file__).resolve().parents[2] / "src" / "data" / "music_label_indices.txt"
    music = set(map(int, music_list.read_text().split()))
    _, held_labels, _, _ = load_clips(held_path)
    asked = np.array([any(label in music and label != 137 for label in labels) for labels in held_labels])
    queries, truth = queries[asked], [t for t, a in zip(truth, asked) if a]
    log(f"{len(queries)} of {len(asked)} held-out clips asked (a music label other than Music), as evaluate does")

    built = {}
    for name in peers:
        started = time.perf_counter()
        saved = cached.with_suffix(".hnswlib") if name == "hnswlib" and cached is not None else None
        if saved is not None and saved.exists():
            batch, single = hnswlib_peer(data, threads, saved)
            log(f"{name} read from {saved} in {time.perf_counter() - started:.1f} s")
        else:
            batch, single = hnswlib_peer(data, threads, saved) if saved else BUILDERS[name](data, threads)
            log(f"{name} built in {time.perf_counter() - started:.1f} s on {threads} threads")
        built[name] = (batch, single)

    rows = {}  # (engine, how, param) -> {"recall": r, "qps": [per round]}

    def record(key, found_recall, qps):
        entry = rows.setdefault(key, {"recall": found_recall, "qps": []})
        entry["qps"].append(qps)

    for round_ in range(rounds):
        log(f"round {round_ + 1} of {rounds}")
        for label, path, rerank in (("none", index, 0), ("defaults", index_default, None)):
            if path is None:
                continue
            for report in soundalike_round(binary, path, held_path, efs, rerank):
                param = "default" if report.get("default") else f"ef {report.get('ef')}"
                if report["search"] != "graph" and not report.get("default"):
                    continue
                key = (f"soundalike ({label})", "in-process loop", f"{param} (walks {report.get('walk')})")
                record(key, report["recall"], report["qps"])
        for name, (batch, single) in built.items():
            params = ANNOY_SEARCH_K if name == "annoy" else efs
            for param in params:
                for how, call in (("C++ batch, 1 thread", batch), ("Python loop", single)):
                    if call is None:
                        continue
                    started = time.perf_counter()
                    found = call(queries, param)
                    qps = len(queries) / (time.perf_counter() - started)
                    found = [np.asarray(f).reshape(-1).tolist() for f in found]
                    what = "search_k" if name == "annoy" else "ef"
                    record((name, how, f"{what} {param}"), recall(found, truth), qps)

    print(f"| engine | how | search | recall@10 | queries/s (median of {rounds}) |")
    print("| --- | --- | --- | ---: | ---: |")
    results = []
    for (engine, how, param), entry in rows.items():
        qps = statistics.median(entry["qps"])
        results.append({"engine": engine, "how": how, "search": param, "recall": round(entry["recall"], 4),
                        "qps": round(qps), "rounds": entry["qps"], "clips": len(data), "queries": len(queries)})
        print(f"| {engine} | {how} | {param} | {entry['recall']:.4f} | {qps:,.0f} |")
    best = {}
    for r in results:
        if r["recall"] >= 0.95:
            key = (r["engine"], r["how"])
            if key not in best or r["qps"] > best[key]["qps"]:
                best[key] = r
    print()
    print("| engine | how | fastest at recall@10 >= 0.95 | recall@10 | queries/s |")
    print("| --- | --- | --- | ---: | ---: |")
    for (engine, how), r in sorted(best.items(), key=lambda kv: -kv[1]["qps"]):
        print(f"| {engine} | {how} | {r['search']} | {r['recall']:.4f} | {r['qps']:,} |")
    if "hnswlib" in built:
        print()
        print("| soundalike | recall@10 | queries/s | hnswlib (C++ batch) at that recall | ratio |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in results:
            if not r["engine"].startswith("soundalike (none)"):
                continue
            peer = matched(results, r["recall"])
            r["hnswlib_matched_qps"] = peer and round(peer)
            r["ratio"] = peer and round(r["qps"] / peer, 3)
            shown = ("-", "-") if peer is None else (f"{peer:,.0f}", f"{r['qps'] / peer:.2f}x")
            print(f"| {r['search']} | {r['recall']:.4f} | {r['qps']:,} | {shown[0]} | {shown[1]} |")
    if out:
        with open(out, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")


def matched(results, at, peer="hnswlib", how="C++ batch, 1 thread"):
    """The peer's queries/s at recall `at`: interpolated linearly between its two breadths whose recalls are
    on either side (a wider breadth that found less is skipped), or None outside the recalls it reached."""
    curve = []
    for r in sorted((r for r in results if r["engine"] == peer and r["how"] == how),
                    key=lambda r: int(r["search"].split()[-1])):
        if not curve or r["recall"] > curve[-1][0]:
            curve.append((r["recall"], r["qps"]))
    for (r1, q1), (r2, q2) in zip(curve, curve[1:]):
        if r1 <= at <= r2:
            return q1 + (q2 - q1) * (at - r1) / (r2 - r1)
    return None


if __name__ == "__main__":
    main()
