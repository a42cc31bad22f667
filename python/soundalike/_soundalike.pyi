"""Type stubs of the native module; the docstrings are on the objects themselves (help(soundalike.Index))."""

import os
import pathlib
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, "os.PathLike[str]"]
_Labels = Union[str, int, Sequence[Union[str, int]]]
Clip = dict  # keys: video_id (str), start_time, end_time (float), labels (list[int]), embedding ((frames, 128) uint8)
Hit = dict  # keys: rank, video_id, distance, similarity, labels, label_names, start_time, end_time, url, matched_at, explain

__version__: str

class DamagedIndexError(Exception): ...

class Search:
    def __init__(
        self,
        *,
        ef: Optional[int] = None,
        search_k: Optional[int] = None,
        exact: bool = False,
        rerank: Optional[int] = None,
    ) -> None: ...
    def with_rerank(self, rerank: Optional[int]) -> "Search": ...

class Embedder:
    def __init__(
        self,
        *,
        weights: Optional[_Path] = None,
        pca: Optional[_Path] = None,
        service: Optional[str] = None,
        max_seconds: Optional[float] = None,
    ) -> None: ...
    def embed(
        self, source: Union[_Path, bytes, bytearray], *, start: Optional[float] = None, end: Optional[float] = None
    ) -> npt.NDArray[np.uint8]: ...
    def embed_clip(
        self,
        source: Union[_Path, bytes, bytearray],
        *,
        video_id: Optional[str] = None,
        start: Optional[float] = None,
        end: Optional[float] = None,
    ) -> Clip: ...

class Index:
    def __init__(self, path: _Path, *, embedder: Optional[Embedder] = None) -> None: ...
    @property
    def path(self) -> pathlib.Path: ...
    def __len__(self) -> int: ...
    def info(self) -> dict: ...
    def plan(self, *, k: int = 10, search: Optional[Search] = None) -> dict: ...
    def _searched(self, offset: int = 0, limit: Optional[int] = None) -> dict: ...
    def vector(self, embedding: Union[npt.ArrayLike, Clip], *, start: Optional[float] = None) -> npt.NDArray[np.float32]: ...
    def recommend(
        self,
        *,
        id: Optional[str] = None,
        embedding: Optional[Union[npt.ArrayLike, Clip]] = None,
        audio: Optional[_Path] = None,
        k: int = 10,
        labels: Optional[_Labels] = None,
        search: Optional[Search] = None,
        start: Optional[float] = None,
        end: Optional[float] = None,
        explain: bool = False,
    ) -> List[Hit]: ...
    def recommend_batch(
        self,
        queries: Union[Sequence[str], npt.ArrayLike],
        *,
        k: int = 10,
        labels: Optional[_Labels] = None,
        search: Optional[Search] = None,
        start: Optional[int] = None,
        distances: bool = False,
    ) -> Tuple[npt.NDArray[np.object_], npt.NDArray[np.float32]]: ...

class ClipReader(Iterator[Clip]):
    def __iter__(self) -> "ClipReader": ...
    def __next__(self) -> Clip: ...
    @property
    def stats(self) -> Optional[dict]: ...

def read_tfrecords(
    inputs: Union[_Path, Sequence[_Path]],
    *,
    music: str = "ontology",
    frames: int = 10,
    skip_corrupt: bool = False,
) -> ClipReader: ...
def build_index(
    path: _Path,
    clips: Union[_Path, Sequence[_Path], Iterable[Clip]],
    *,
    projection: Optional[_Path] = None,
    metric: str = "angular",
    vector: str = "mean",
    frames: int = 10,
    trees: Optional[int] = None,
    seed: int = 42,
    threads: int = 1,
    append: bool = False,
) -> dict: ...
def class_names() -> List[str]: ...
def file_id(path: _Path) -> str: ...
