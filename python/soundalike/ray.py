"""Batch inference on Ray Data: callable classes for `Dataset.map_batches`, each worker making its own once.

    import ray, soundalike.ray as sr
    files = ray.data.read_binary_files("songs/", include_paths=True)
    clips = files.map_batches(sr.EmbedBatch, fn_constructor_kwargs={"weights": W, "pca": P},
                              compute=ray.data.ActorPoolStrategy(size=2), batch_size=8, batch_format="pyarrow")
    clips.write_parquet("clips/")                                 # soundalike.arrow's clip columns + error
    answers = clips.map_batches(sr.RecommendBatch, fn_constructor_args=("music.idx",),
                                compute=ray.data.ActorPoolStrategy(size=2), batch_format="pyarrow")

Each class is made on a worker from plain arguments (paths, options): `EmbedBatch` loads VGGish's weights
once per worker, `RecommendBatch` opens the index (or the sharded index) once per worker, and every batch
after that reuses them. Nothing heavy is pickled: Ray sends the class and its arguments, and soundalike's
`Index` and `Embedder` pickle as their arguments too (unpickling opens the files again, so the paths must
name them on the worker's machine: a shared file system, or the same layout on every node).

This module imports without Ray (its classes are plain callables: `EmbedBatch(...)(batch)` works in any
process); `pip install "soundalike[ray]"` brings Ray Data. A local cluster on a small machine needs more
logical CPUs than actors, or the read tasks wait for ever (docs/scale.md): `ray.init(num_cpus=4)` for two
actors on two cores.
"""

import numpy as np

from . import Embedder, Index, arrow, file_id
from .shards import group_by_length

__all__ = ["EmbedBatch", "RecommendBatch", "open_index"]


def _columns(batch):
    """A batch as {column: list}: a pyarrow Table, a pandas DataFrame or a dict of arrays."""
    if hasattr(batch, "to_pydict"):
        return batch.to_pydict()
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):
        return {name: list(batch[name]) for name in batch.columns}
    return {name: list(values) for name, values in batch.items()}


def _number(value):
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


class EmbedBatch:
    """Audio files to clips: for `map_batches` over `ray.data.read_binary_files(..., include_paths=True)`.

    Each row's audio is its `bytes` column (the file's bytes) or, without one, the file at its `path`; optional
    `start` and `end` columns give the stretch in seconds. The answer is a pyarrow Table of clips
    (`soundalike.arrow.clip_schema()`'s columns) with one more column, `error`: null for a clip, or why the
    file could not be embedded, in which case the clip's embedding is empty. A bad file is a row, not a failed
    job. video_id is the row's `video_id` column when the batch has one, else the file's, as `soundalike embed`
    names it (`soundalike.file_id(path)`).

    weights, pca, service, max_seconds: as `soundalike.Embedder`, loaded when the worker makes the class.

    One actor per core with one compute thread each is the fastest layout (docs/scale.md): pass
    `runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}}` to `map_batches`."""

    def __init__(self, *, weights=None, pca=None, service=None, max_seconds=None):
        self.embedder = Embedder(weights=weights, pca=pca, service=service, max_seconds=max_seconds)

    def __call__(self, batch):
        columns = _columns(batch)
        paths = columns.get("path")
        sources = columns.get("bytes") or paths
        if sources is None:
            raise ValueError("EmbedBatch: the batch has neither a 'bytes' nor a 'path' column")
        video_ids = columns.get("video_id")
        if video_ids is None and paths is None:
            raise ValueError("EmbedBatch: audio given as bytes needs a 'path' or a 'video_id' column to name its clips")
        starts = columns.get("start") or [None] * len(sources)
        ends = columns.get("end") or [None] * len(sources)
        clips, errors = [], []
        for i, source in enumerate(sources):
            path = paths[i] if paths is not None else None
            video_id = None
            try:
                video_id = video_ids[i] if video_ids is not None else file_id(path)
                clip = self.embedder.embed_clip(
                    source, video_id=video_id, start=_number(starts[i]), end=_number(ends[i])
                )
                errors.append(None)
            except (ValueError, OSError) as error:
                start = _number(starts[i]) or 0.0
                clip = {
                    "video_id": video_id or str(path),
                    "start_time": start,
                    "end_time": start,
                    "labels": [],
                    "embedding": np.zeros((0, arrow.EMBEDDING_BYTES), dtype=np.uint8),
                }
                # The library's message names a file it was given by path; one given as bytes is named here.
                message = str(error)
                if path is not None and str(path) not in message:
                    message = f"{path}: {message}"
                errors.append(message)
            clips.append(clip)
        table = arrow.clips_to_table(clips)
        return table.append_column("error", arrow._pyarrow().array(errors, type=arrow._pyarrow().string()))


def open_index(path):
    """An Index, or a ShardedIndex when `path` holds a shard manifest."""
    from pathlib import Path

    from .shards import MANIFEST, ShardedIndex

    if (Path(path) / MANIFEST).exists():
        return ShardedIndex(path)
    return Index(path)


class RecommendBatch:
    """Queries to neighbours: for `map_batches` over ids or clips.

    Each row is asked by its `embedding` column when the batch has one (a clip table's list of 128-byte
    rows, as `EmbedBatch` and `soundalike.arrow` write), else by its `video_id`. The answer is the batch with
    two more columns: `neighbours` (list of video_ids, nearest first) and `similarities` (list of float32; the
    distances on an index whose metric is not angular). Rows with an `error` (from `EmbedBatch`) or no
    embedding rows get empty lists.

    index: the index's path (or a sharded index's directory), opened once per worker. k, ef, search_k, exact,
    rerank, labels: as `Index.recommend_batch` and `soundalike.Search`."""

    def __init__(self, index, *, k=10, ef=None, search_k=None, exact=False, rerank=None, labels=None):
        from . import Search

        self.index = open_index(index)
        self.k = k
        self.labels = labels
        self.search = Search(ef=ef, search_k=search_k, exact=exact, rerank=rerank)

    def __call__(self, batch):
        pa = arrow._pyarrow()
        table = batch if isinstance(batch, pa.Table) else pa.table(batch)
        n = table.num_rows
        neighbours = [[] for _ in range(n)]
        similarities = [[] for _ in range(n)]
        errors = table.column("error").to_pylist() if "error" in table.column_names else [None] * n
        if "embedding" in table.column_names:
            rows = _embedding_column(table)
            asked = [(i, r) for i, r in enumerate(rows) if errors[i] is None and len(r) > 0]
            groups = group_by_length(asked)
        else:
            ids = table.column("video_id").to_pylist()
            asked = [i for i in range(n) if errors[i] is None]
            groups = [(asked, [ids[i] for i in asked])] if asked else []
        for positions, queries in groups:
            found_ids, found_sims = self.index.recommend_batch(
                queries, k=self.k, search=self.search, labels=self.labels
            )
            for row, i in enumerate(positions):
                keep = [j for j, video_id in enumerate(found_ids[row]) if video_id is not None]
                neighbours[i] = [found_ids[row][j] for j in keep]
                similarities[i] = [float(found_sims[row][j]) for j in keep]
        table = table.append_column("neighbours", pa.array(neighbours, type=pa.list_(pa.string())))
        return table.append_column("similarities", pa.array(similarities, type=pa.list_(pa.float32())))


def _embedding_column(table):
    embedding = table.column("embedding").combine_chunks()
    offsets, data = arrow._embedding_rows(embedding)
    return [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
