"""soundalike: recommend music by how it sounds, from AudioSet's VGGish embeddings.

The engine of the `soundalike` command line, in-process: open an index once and ask it as often as you like,
with numpy arrays in and out, and no process started per question.

    >>> import soundalike
    >>> idx = soundalike.Index("music.idx")
    >>> idx.recommend(id="xtGmrLOsjHk", k=5)          # list of dicts, as `recommend --json` gives
    >>> ids, sims = idx.recommend_batch(["xtGmrLOsjHk", "dRvVBKLxCgU"], k=10)
    >>> idx.recommend(id="xtGmrLOsjHk", search=soundalike.Search(ef=40, rerank=0))
    >>> vggish = soundalike.Embedder()                  # VGGish's weights, loaded once
    >>> rows = vggish.embed("song.wav", start=0, end=10)   # (rows, 128) uint8
    >>> soundalike.Index("music.idx", embedder=vggish).recommend(audio="song.mp3", start=60, end=70)

Clips as Arrow tables and Parquet files, and an index's vectors for a vector database: soundalike.arrow.
Batch inference on Ray Data: soundalike.ray. Indexes split across machines: soundalike.shards.

Errors are exceptions: FileNotFoundError (no index, no file, no weights), ValueError (bad input or option),
KeyError (a video_id not in the index), soundalike.DamagedIndexError (an index to rebuild), each with the
message the command line prints. Searches, embeddings and builds release the interpreter's lock, so threads
run them in parallel.
"""

from ._soundalike import (
    ClipReader,
    DamagedIndexError,
    Embedder,
    Index,
    Search,
    __version__,
    class_names,
    file_id,
    read_tfrecords,
)
from ._soundalike import build_index as _build_index
from inspect import signature as _signature

__all__ = [
    "ClipReader",
    "DamagedIndexError",
    "Embedder",
    "Index",
    "Search",
    "__version__",
    "build_index",
    "class_names",
    "embed",
    "file_id",
    "read_tfrecords",
]


def embed(path, *, start=None, end=None, max_seconds=None, weights=None, pca=None, service=None):
    """The VGGish embedding of an audio file (WAV, FLAC, MP3, Ogg Vorbis): a (rows, 128) uint8 array, one row
    per 0.96 s, as AudioSet's embeddings and `soundalike embed` give it.

    A shorthand for Embedder(weights=..., pca=..., service=..., max_seconds=...).embed(path, start=, end=): the
    weights are loaded once per process and reused while the same files are asked for. start, end: the stretch
    of the file, in seconds; max_seconds: the most audio embedded (default 1200).

    Raises FileNotFoundError when the file or the weights are missing (saying where to get them), ValueError
    for audio that cannot be decoded or is too short.
    """
    embedder = Embedder(weights=weights, pca=pca, service=service, max_seconds=max_seconds)
    return embedder.embed(path, start=start, end=end)


def _is_arrow(clips):
    return type(clips).__module__.startswith("pyarrow") and hasattr(clips, "schema")


def _is_parquet(clips):
    import os

    return isinstance(clips, (str, os.PathLike)) and os.fspath(clips).lower().endswith(".parquet")


def build_index(path, clips, **options):
    if _is_arrow(clips) or _is_parquet(clips):
        from . import arrow

        clips = arrow.table_to_clips(clips)
    return _build_index(path, clips, **options)


# The native function's keywords, for help() and editors.
build_index.__signature__ = _signature(_build_index)
build_index.__doc__ = (_build_index.__doc__ or "") + """

Also a clip table (pyarrow.Table or RecordBatch, soundalike.arrow's columns) or a Parquet file of one (a path
ending in .parquet): its clips are handed over as arrays, as clip dicts are."""
