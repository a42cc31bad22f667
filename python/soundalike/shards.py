"""A sharded index: a catalogue's clips split by video_id into N indexes built in parallel, asked together.

For a catalogue larger than one machine's memory, or built faster on many: `build_shards` partitions the
clips by a stable hash of their video_id (crc32 modulo N: the same clip lands in the same shard on every
machine and every run), writes each partition as Parquet beside its index, and builds the N indexes, as Ray
tasks when Ray is running (one per shard, on whichever node has room) or one after another in this process.
`ShardedIndex` asks every shard for k neighbours and merges them by similarity.

With an exact search the merged answer is one index's exact answer over the same clips: each shard's k
best hold every one of the global k best that it has. With a re-rank (the defaults re-rank 20 candidates by
their frames) the shards are asked twice: for the nearest by vector, of which the global best are the
candidates one index would re-rank, and for those candidates' frame scores, which each shard gives its own;
the candidates are then ordered by them. With the graph walk, each shard's candidates are its own walk's.

    >>> from soundalike.shards import build_shards, ShardedIndex
    >>> build_shards("catalogue.parquet", "catalogue.shards", shards=4)
    >>> shards = ShardedIndex("catalogue.shards")
    >>> ids, sims = shards.recommend_batch(["xtGmrLOsjHk"], k=10)
"""

import json
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["ShardedIndex", "build_shards", "shard_of"]

MANIFEST = "shards.json"
FORMAT = 1


def shard_of(video_id, shards):
    """The shard a clip belongs in: crc32 of its video_id's UTF-8 bytes, modulo the number of shards."""
    return zlib.crc32(video_id.encode("utf-8")) % shards


def _clip_table(clips):
    from . import arrow

    pa = arrow._pyarrow()
    if isinstance(clips, pa.Table):
        return clips
    if isinstance(clips, (str, os.PathLike)):
        return arrow.read_parquet(clips)
    return arrow.clips_to_table(clips)


def _build_one(index_path, clips_path, options):
    """One shard's index from its Parquet file (run in this process or as a Ray task)."""
    from . import arrow, build_index

    return build_index(index_path, arrow.table_to_clips(arrow.read_parquet(clips_path)), **options)


def build_shards(clips, directory, *, shards=4, ray=None, **options):
    """Builds a sharded index in `directory` (created; refused when it holds a manifest already).

    clips: a clip table, a Parquet file of clips, or clip dicts. shards: how many. ray: True to build the
    shards as Ray tasks (Ray must be installed; `ray.init()` is called when no cluster is connected), False to
    build them here one after another, None (default) to use Ray when it is already initialised. options: the
    keywords of `build_index` (projection, metric, trees, seed, threads, ...), the same for every shard.

    Returns the manifest: {"format", "partition", "shards": [{"index", "clips", "count", "built"}]}.
    """
    import pyarrow.compute as pc

    from . import arrow

    if shards < 1:
        raise ValueError(f"shards={shards}: at least 1")
    directory = Path(directory)
    if (directory / MANIFEST).exists():
        raise FileExistsError(f"{directory}: holds a sharded index already ({MANIFEST})")
    directory.mkdir(parents=True, exist_ok=True)
    table = _clip_table(clips)
    ids = table.column("video_id").to_pylist()
    assigned = arrow._pyarrow().array(
        np.fromiter((shard_of(video_id, shards) for video_id in ids), dtype=np.int64, count=len(ids))
    )
    entries = []
    for shard in range(shards):
        part = table.filter(pc.equal(assigned, shard))
        clips_path = directory / f"shard-{shard:03d}.parquet"
        arrow.write_parquet(part, clips_path)
        entries.append({"index": f"shard-{shard:03d}.idx", "clips": clips_path.name, "count": part.num_rows})
    jobs = [(str(directory / e["index"]), str(directory / e["clips"]), options) for e in entries]
    if _use_ray(ray):
        import ray as ray_module

        if not ray_module.is_initialized():
            ray_module.init()
        task = ray_module.remote(_build_one)
        built = ray_module.get([task.remote(*job) for job in jobs])
    else:
        built = [_build_one(*job) for job in jobs]
    for entry, report in zip(entries, built):
        entry["built"] = report
    manifest = {"format": FORMAT, "partition": f"crc32(video_id) % {shards}", "shards": entries}
    partial = directory / f"{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, directory / MANIFEST)
    return manifest


def _use_ray(ray):
    if ray is False:
        return False
    try:
        import ray as ray_module
    except ImportError:
        if ray:
            raise ImportError("build_shards(ray=True) needs Ray: pip install \"soundalike[ray]\"") from None
        return False
    return bool(ray) or ray_module.is_initialized()


class ShardedIndex:
    """The shards `build_shards` made in `directory`, opened once and asked together.

    Constructible anywhere from its path (a Ray worker, a process pool): pickling it sends the path, and
    the shards are opened again where it is unpickled."""

    def __init__(self, directory):
        from . import Index

        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.directory}: no sharded index here (no {MANIFEST})") from None
        except ValueError as error:
            raise ValueError(f"{manifest_path}: not a shard manifest: {error}") from None
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: format {manifest.get('format')!r}, this package reads {FORMAT}")
        self.manifest = manifest
        self.shards = [Index(self.directory / entry["index"]) for entry in manifest["shards"]]
        self._embeddings = [None] * len(self.shards)
        # An angular index answers similarities (higher is nearer), the others distances (lower is nearer).
        settings = self.shards[0].info()["settings"] if self.shards else {}
        self._nearer = 1.0 if settings.get("metric", "angular") == "angular" else -1.0

    def __reduce__(self):
        return (ShardedIndex, (str(self.directory),))

    def __len__(self):
        return sum(len(shard) for shard in self.shards)

    def __repr__(self):
        return f"soundalike.shards.ShardedIndex({str(self.directory)!r}, shards={len(self.shards)}, clips={len(self)})"

    def _embedding(self, shard, video_id):
        """A clip's embedding rows, from its shard's Parquet file (read once, when an id is first asked)."""
        from . import arrow

        if self._embeddings[shard] is None:
            path = self.directory / self.manifest["shards"][shard]["clips"]
            self._embeddings[shard] = {clip["video_id"]: clip["embedding"] for clip in arrow.table_to_clips(path)}
        try:
            return self._embeddings[shard][video_id]
        except KeyError:
            raise KeyError(f"no clip '{video_id}' in the sharded index {self.directory}") from None

    def recommend_batch(self, queries, *, k=10, search=None, labels=None):
        """As `Index.recommend_batch`: (ids, similarities), two (n, k) arrays, nearest first (distances on an
        index whose metric is not angular).

        queries: video_ids (each asked by id of the shard holding it, and by its embedding of the others), or
        a list of (rows, 128) embeddings (clips of any length: asked in groups of equal length).

        With a re-rank (the defaults), the candidates re-ranked are those one index would re-rank: the nearest
        by vector over all the shards, then ordered by the frame scores their own shards give them."""
        from . import Search

        queries = list(queries)
        search = search if search is not None else Search()
        depth = self.shards[0].plan(k=k, search=search)["rerank"] if self.shards else 0
        if depth == 0:
            return self._nearest(self._gather(queries, k, search, labels), k)
        pool = max(k, depth)
        candidates, _ = self._nearest(self._gather(queries, pool, search.with_rerank(0), labels), pool)
        # Each shard re-ranks its own `pool` nearest, which hold every candidate of the pool it has.
        scored = [dict(found) for found in self._gather(queries, pool, search.with_rerank(pool), labels)]
        reranked = []
        for row, scores in zip(candidates, scored):
            kept = [video_id for video_id in row if video_id is not None and video_id in scores]
            reranked.append([(video_id, scores[video_id]) for video_id in kept])
        return self._nearest(reranked, k)

    def _gather(self, queries, k, search, labels):
        """Every shard's k nearest for each query, as one list of (video_id, score) per query."""
        n = len(queries)
        by_id = n > 0 and all(isinstance(q, str) for q in queries)
        owner = [shard_of(q, len(self.shards)) for q in queries] if by_id else None
        answers = [[] for _ in range(n)]
        for number, shard in enumerate(self.shards):
            if by_id:
                owned = [i for i in range(n) if owner[i] == number]
                if owned:
                    found = shard.recommend_batch([queries[i] for i in owned], k=k, search=search, labels=labels)
                    self._collect(answers, owned, found)
                asked = [(i, self._embedding(owner[i], queries[i])) for i in range(n) if owner[i] != number]
            else:
                asked = [(i, np.asarray(q)) for i, q in enumerate(queries)]
            for positions, rows in group_by_length(asked):
                self._collect(answers, positions, shard.recommend_batch(rows, k=k, search=search, labels=labels))
        return answers

    def _nearest(self, answers, k):
        """The k nearest of each query's gathered answers, as (ids, scores) arrays."""
        ids = np.full((len(answers), k), None, dtype=object)
        sims = np.full((len(answers), k), np.nan, dtype=np.float32)
        for i, found in enumerate(answers):
            # The nearest first; equal ones by video_id, so the order is the same on every run.
            found = sorted(found, key=lambda hit: (-self._nearer * hit[1], hit[0]))
            for slot, (video_id, similarity) in enumerate(found[:k]):
                ids[i, slot] = video_id
                sims[i, slot] = similarity
        return ids, sims

    @staticmethod
    def _collect(answers, positions, found):
        ids, sims = found
        for row, i in enumerate(positions):
            answers[i].extend(
                (video_id, float(sim)) for video_id, sim in zip(ids[row], sims[row]) if video_id is not None
            )


def group_by_length(asked):
    """(position, rows) pairs grouped by their number of rows, each group as (positions, one (n, rows, 128)
    float32 array): `Index.recommend_batch` takes clips of one length at a time."""
    groups = {}
    for position, rows in asked:
        groups.setdefault(rows.shape[0], []).append((position, rows))
    for members in groups.values():
        yield [p for p, _ in members], np.stack([r for _, r in members]).astype(np.float32)
