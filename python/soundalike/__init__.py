"""soundalike: recommend music by how it sounds, from AudioSet's VGGish embeddings.

The engine of the `soundalike` command line, in-process: open an index once and ask it as often as you like,
with numpy arrays in and out, and no process started per question.

    >>> import soundalike
    >>> idx = soundalike.Index("music.idx")
    >>> idx.recommend(id="xtGmrLOsjHk", k=5)          # list of dicts, as `recommend --json` gives
    >>> ids, sims = idx.recommend_batch(["xtGmrLOsjHk", "dRvVBKLxCgU"], k=10)
    >>> rows = soundalike.embed("song.wav", start=0, end=10)   # (rows, 128) uint8

Errors are exceptions: FileNotFoundError (no index, no file, no weights), ValueError (bad input or option),
KeyError (a video_id not in the index), soundalike.DamagedIndexError (an index to rebuild), each with the
message the command line prints. Searches, embeddings and builds release the interpreter's lock, so threads
run them in parallel.
"""

from ._soundalike import (
    ClipReader,
    DamagedIndexError,
    Index,
    __version__,
    build_index,
    class_names,
    embed,
    read_tfrecords,
)

__all__ = [
    "ClipReader",
    "DamagedIndexError",
    "Index",
    "__version__",
    "build_index",
    "class_names",
    "embed",
    "read_tfrecords",
]
