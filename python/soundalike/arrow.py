"""Clips as Arrow tables and Parquet files, and an index's vectors for a vector database.

A clip table has one row per clip, the columns of a clip dict:

    video_id    string
    start_time  float64 (seconds)
    end_time    float64
    labels      list<int32> (AudioSet class indices)
    embedding   list<fixed_size_binary[128]> (one 128-byte row per 0.96 s, as AudioSet stores them)

so a clip costs its 128 bytes a second and its metadata, against about 3.5 times that as JSON Lines' numbers
(BENCHMARKS.md, "Parquet against JSON Lines"). Tables go to and from Parquet with pyarrow's own reader and
writer; `build_index` takes a table or a Parquet file directly (`soundalike.build_index(path, table)`), each
clip handed over as arrays, never as JSON.

    >>> import soundalike, soundalike.arrow as sa
    >>> table = sa.clips_to_table(soundalike.read_tfrecords("bal_train/"))
    >>> sa.write_parquet(table, "clips.parquet")
    >>> soundalike.build_index("music.idx", sa.read_parquet("clips.parquet"))
    >>> sa.export(soundalike.Index("music.idx"), "vectors.parquet")      # for Milvus, Qdrant, LanceDB

pyarrow is an optional dependency (`pip install "soundalike[arrow]"`); this module imports without it and says
so at the first call that needs it.
"""

import os

import numpy as np

EMBEDDING_BYTES = 128

__all__ = [
    "EMBEDDING_BYTES",
    "clip_schema",
    "clips_to_table",
    "export",
    "export_schema",
    "read_parquet",
    "table_to_clips",
    "write_parquet",
]


def _pyarrow():
    try:
        import pyarrow
    except ImportError as error:
        raise ImportError(
            "soundalike.arrow needs pyarrow: pip install pyarrow (or pip install \"soundalike[arrow]\")"
        ) from error
    return pyarrow


def clip_schema():
    """The Arrow schema of a clip table (see the module's docstring)."""
    pa = _pyarrow()
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("start_time", pa.float64()),
            ("end_time", pa.float64()),
            ("labels", pa.list_(pa.int32())),
            ("embedding", pa.list_(pa.binary(EMBEDDING_BYTES))),
        ]
    )


def _rows(embedding, where):
    """A clip's embedding as a (rows, 128) uint8 array: uint8 as it is, whole numbers 0 to 255 converted."""
    rows = np.asarray(embedding)
    if rows.ndim != 2 or rows.shape[1] != EMBEDDING_BYTES:
        raise ValueError(f"{where}: embedding: not (rows, {EMBEDDING_BYTES}) values but shape {rows.shape}")
    if rows.dtype != np.uint8:
        if not (np.all(rows == np.round(rows)) and rows.min(initial=0) >= 0 and rows.max(initial=0) <= 255):
            raise ValueError(f"{where}: embedding: values must be whole numbers 0 to 255 (AudioSet's bytes)")
        rows = rows.astype(np.uint8)
    return np.ascontiguousarray(rows)


def clips_to_table(clips):
    """A clip table from clip dicts (a `read_tfrecords` reader, a list, any iterable; `embed_clip`'s dicts).

    Raises ValueError naming the clip (its position) when a dict is not a clip."""
    pa = _pyarrow()
    ids, starts, ends, labels, counts, chunks = [], [], [], [], [0], []
    for n, clip in enumerate(clips):
        try:
            ids.append(str(clip["video_id"]))
            starts.append(float(clip["start_time"]))
            ends.append(float(clip["end_time"]))
            labels.append([int(label) for label in clip["labels"]])
            embedding = clip["embedding"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"clips[{n}]: not a clip dict ({error!r})") from None
        rows = _rows(embedding, f"clips[{n}]")
        chunks.append(rows.reshape(-1))
        counts.append(rows.shape[0])
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)
    rows = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(EMBEDDING_BYTES), len(flat) // EMBEDDING_BYTES, [None, pa.py_buffer(flat)]
    )
    offsets = pa.array(np.cumsum(counts, dtype=np.int32), type=pa.int32())
    return pa.Table.from_arrays(
        [
            pa.array(ids, type=pa.string()),
            pa.array(starts, type=pa.float64()),
            pa.array(ends, type=pa.float64()),
            pa.array(labels, type=pa.list_(pa.int32())),
            pa.ListArray.from_arrays(offsets, rows),
        ],
        schema=clip_schema(),
    )


def _embedding_rows(column):
    """A list<fixed_size_binary[128]> chunk as (offsets, every row as one (n, 128) uint8 array), no copy."""
    values = column.values
    data = np.frombuffer(values.buffers()[1], dtype=np.uint8).reshape(-1, EMBEDDING_BYTES)
    return np.asarray(column.offsets), data[values.offset : values.offset + len(values)]


def table_to_clips(table):
    """The clips of a clip table (or a Parquet file's path) as clip dicts, one at a time: the keys and types
    `read_tfrecords` gives (embedding a (rows, 128) uint8 view of the table's memory)."""
    pa = _pyarrow()
    if not isinstance(table, (pa.Table, pa.RecordBatch)):
        table = read_parquet(table)
    missing = [name for name in clip_schema().names if name not in table.schema.names]
    if missing:
        raise ValueError(f"not a clip table: no column {', '.join(map(repr, missing))}")
    batches = table.to_batches() if isinstance(table, pa.Table) else [table]
    for batch in batches:
        embedding = batch.column("embedding")
        if embedding.type != pa.list_(pa.binary(EMBEDDING_BYTES)):
            embedding = embedding.cast(pa.list_(pa.binary(EMBEDDING_BYTES)))
        offsets, data = _embedding_rows(embedding)
        ids = batch.column("video_id").to_pylist()
        starts = batch.column("start_time").to_numpy(zero_copy_only=False)
        ends = batch.column("end_time").to_numpy(zero_copy_only=False)
        labels = batch.column("labels").to_pylist()
        for i, video_id in enumerate(ids):
            yield {
                "video_id": video_id,
                "start_time": float(starts[i]),
                "end_time": float(ends[i]),
                "labels": labels[i] or [],
                "embedding": data[offsets[i] : offsets[i + 1]],
            }


def write_parquet(clips, path, **options):
    """Writes clips (a clip table, or clip dicts) to a Parquet file at `path`, whole or not at all (a sibling
    file renamed into place). options go to `pyarrow.parquet.write_table` (compression="zstd" is the
    default here: the embedding bytes compress to about half)."""
    import pyarrow.parquet as pq

    pa = _pyarrow()
    table = clips if isinstance(clips, pa.Table) else clips_to_table(clips)
    options.setdefault("compression", "zstd")
    path = os.fspath(path)
    partial = f"{path}.partial"
    try:
        pq.write_table(table, partial, **options)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def read_parquet(path):
    """A clip table from a Parquet file written by `write_parquet` (or any file with the clip columns)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [name for name in clip_schema().names if name not in table.schema.names]
    if missing:
        raise ValueError(f"{path}: not a clip table: no column {', '.join(map(repr, missing))}")
    return table


def export_schema(dimensions, vector="fixed_size_list"):
    """The schema `export` writes: id (int64, the clip's position in the export: a primary key for the
    database), video_id, start_time, end_time, labels, and vector (float32 x dimensions: a
    fixed_size_list, as LanceDB and Arrow's vector convention take it, or vector="list", a plain list, as
    Milvus's bulk insert takes it)."""
    pa = _pyarrow()
    if vector == "fixed_size_list":
        vector_type = pa.list_(pa.float32(), dimensions)
    elif vector == "list":
        vector_type = pa.list_(pa.float32())
    else:
        raise ValueError(f"vector={vector!r}: 'fixed_size_list' or 'list'")
    return pa.schema(
        [
            ("id", pa.int64()),
            ("video_id", pa.string()),
            ("start_time", pa.float64()),
            ("end_time", pa.float64()),
            ("labels", pa.list_(pa.int32())),
            ("vector", vector_type),
        ]
    )


def _export_batches(index, batch_rows, vector):
    pa = _pyarrow()
    offset, total = 0, None
    while total is None or offset < total:
        columns = index._searched(offset, batch_rows)
        total = columns["total"]
        vectors = np.ascontiguousarray(columns["vector"], dtype=np.float32)
        rows, dimensions = vectors.shape
        if rows == 0:
            break
        values = pa.array(vectors.reshape(-1), type=pa.float32())
        if vector == "fixed_size_list":
            vector_column = pa.FixedSizeListArray.from_arrays(values, dimensions)
        else:
            offsets = pa.array(np.arange(0, rows * dimensions + 1, dimensions, dtype=np.int32))
            vector_column = pa.ListArray.from_arrays(offsets, values)
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(np.arange(offset, offset + rows, dtype=np.int64)),
                pa.array(columns["video_id"], type=pa.string()),
                pa.array(columns["start_time"], type=pa.float64()),
                pa.array(columns["end_time"], type=pa.float64()),
                pa.array(columns["labels"], type=pa.list_(pa.int32())),
                vector_column,
            ],
            schema=export_schema(dimensions, vector),
        )
        offset += rows


def export(index, path=None, *, batch_rows=65_536, vector="fixed_size_list"):
    """What `index` searches, clip by clip, for a vector database: each clip's vector as the index compares
    it (after the projection, unit length on an angular index: cosine or inner product in the database), with
    its id, video_id, labels and times (`export_schema`). The exact scan of these vectors is what
    `Search(exact=True, rerank=0)` answers; the frame re-rank has no counterpart there (docs/scale.md).

    index: a `soundalike.Index` (or its path). path: a Parquet file to write, whole or not at all, in
    row groups of batch_rows clips (memory stays at one batch); None: return the table. vector: see
    `export_schema`. Returns the table, or {"path", "rows", "dimensions"} when written."""
    import pyarrow.parquet as pq

    from . import Index

    pa = _pyarrow()
    if not isinstance(index, Index):
        index = Index(index)
    batches = _export_batches(index, batch_rows, vector)
    dimensions = int(index._searched(0, 0)["vector"].shape[1])
    if path is None:
        return pa.Table.from_batches(list(batches), schema=export_schema(dimensions, vector))
    path = os.fspath(path)
    partial = f"{path}.partial"
    rows, writer = 0, None
    try:
        writer = pq.ParquetWriter(partial, export_schema(dimensions, vector), compression="zstd")
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
        writer.close()
        writer = None
        os.replace(partial, path)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(partial):
            os.remove(partial)
    return {"path": path, "rows": rows, "dimensions": dimensions}
