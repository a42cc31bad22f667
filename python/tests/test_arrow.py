"""Clips as Arrow tables and Parquet files (soundalike.arrow): the same clips as the command line's ingest, an
index built from a table that answers as the command line's does, and the export a vector database loads."""

import pickle

import numpy as np
import pytest

import soundalike
from conftest import RECORDS, need

OPERA = "xtGmrLOsjHk"
EXACT = dict(exact=True, rerank=0)


@pytest.fixture(scope="module")
def sa():
    need("pyarrow", "arrow")
    import soundalike.arrow

    return soundalike.arrow


@pytest.fixture(scope="module")
def table(sa):
    return sa.clips_to_table(soundalike.read_tfrecords(RECORDS))


def test_a_clip_table_holds_the_clips_ingest_writes(sa, table, clips):
    assert table.schema == sa.clip_schema()
    assert table.num_rows == len(clips) == 779
    for mine, theirs in zip(sa.table_to_clips(table), clips):
        assert mine["video_id"] == theirs["video_id"]
        assert (mine["start_time"], mine["end_time"]) == (theirs["start_time"], theirs["end_time"])
        assert mine["labels"] == theirs["labels"]
        assert mine["embedding"].dtype == np.uint8
        np.testing.assert_array_equal(mine["embedding"], np.array(theirs["embedding"], dtype=np.uint8))


def test_parquet_round_trip_is_byte_equal_and_smaller_than_json_lines(sa, table, clips_file, tmp_path):
    path = tmp_path / "clips.parquet"
    sa.write_parquet(table, path)
    back = sa.read_parquet(path)
    assert back.equals(table)
    assert path.stat().st_size < clips_file.stat().st_size / 2
    # A slice (its offsets start past 0) reads back as the same clips.
    sliced = list(sa.table_to_clips(back.slice(100, 5)))
    whole = list(sa.table_to_clips(table))[100:105]
    assert [c["video_id"] for c in sliced] == [c["video_id"] for c in whole]
    for a, b in zip(sliced, whole):
        np.testing.assert_array_equal(a["embedding"], b["embedding"])


def test_an_index_built_from_a_table_answers_as_the_command_lines(sa, table, index_dir, tmp_path):
    path = tmp_path / "clips.parquet"
    sa.write_parquet(table, path)
    ids = table.column("video_id").to_pylist()[::37]
    theirs = soundalike.Index(index_dir).recommend_batch(ids, k=10, search=soundalike.Search(**EXACT))
    for clips in (table, path):
        built = tmp_path / f"from-{type(clips).__name__}.idx"
        report = soundalike.build_index(built, clips)
        assert report["clips"] == 779
        mine = soundalike.Index(built).recommend_batch(ids, k=10, search=soundalike.Search(**EXACT))
        np.testing.assert_array_equal(mine[0], theirs[0])
        np.testing.assert_allclose(mine[1], theirs[1], atol=1e-6)


def test_bad_clips_are_refused_naming_the_clip_and_leave_the_file_as_it_was(sa, tmp_path):
    path = tmp_path / "clips.parquet"
    path.write_bytes(b"what the user had")
    good = {"video_id": "a", "start_time": 0.0, "end_time": 10.0, "labels": [137],
            "embedding": np.zeros((10, 128), dtype=np.uint8)}
    with pytest.raises(ValueError, match=r"clips\[1\]: not a clip dict"):
        sa.write_parquet([good, {"video_id": "b"}], path)
    with pytest.raises(ValueError, match=r"clips\[0\]: not a clip dict"):
        sa.write_parquet([dict(good, labels=["Jazz"])], path)
    with pytest.raises(ValueError, match=r"clips\[0\]: embedding: values must be whole numbers 0 to 255"):
        sa.write_parquet([dict(good, embedding=np.full((10, 128), 300))], path)
    assert path.read_bytes() == b"what the user had"
    with pytest.raises(ValueError, match="not a clip table"):
        sa.read_parquet(sa.export(soundalike.Index(_tiny_index(sa, good, tmp_path)), tmp_path / "x.parquet")["path"])


def _tiny_index(sa, clip, tmp_path):
    path = tmp_path / "tiny.idx"
    clips = [dict(clip, video_id=f"clip{i:02d}", embedding=np.full((10, 128), i, dtype=np.uint8)) for i in range(12)]
    soundalike.build_index(path, sa.clips_to_table(clips))
    return path


def test_the_export_is_what_the_exact_scan_searches(sa, index_dir, tmp_path):
    index = soundalike.Index(index_dir)
    exported = sa.export(index, batch_rows=100)
    assert exported.num_rows == len(index) == 779
    assert exported.column("id").to_pylist() == list(range(779))
    vectors = np.array(exported.column("vector").to_pylist(), dtype=np.float32)
    assert vectors.shape == (779, index.info()["settings"]["dimensions"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    ids = exported.column("video_id").to_pylist()
    asked = list(range(0, 779, 41))
    theirs, sims = index.recommend_batch([ids[i] for i in asked], k=10, search=soundalike.Search(**EXACT))
    scores = vectors[asked] @ vectors.T
    for row, i in enumerate(asked):
        scores[row, i] = -np.inf  # a clip is not its own neighbour
        order = np.argsort(-scores[row], kind="stable")[:10]
        np.testing.assert_allclose(np.sort(scores[row, order])[::-1], sims[row], atol=1e-5)
        assert set(ids[j] for j in order) == set(theirs[row]) or np.isclose(scores[row, order[-1]], sims[row, -1])
    written = sa.export(index, tmp_path / "vectors.parquet", vector="list")
    assert written["rows"] == 779 and written["dimensions"] == vectors.shape[1]
    import pyarrow.parquet as pq

    again = pq.read_table(written["path"])
    np.testing.assert_array_equal(np.array(again.column("vector").to_pylist(), dtype=np.float32), vectors)


def test_an_index_and_an_embedder_pickle_as_their_arguments(index_dir, formula_weights):
    index = soundalike.Index(index_dir)
    again = pickle.loads(pickle.dumps(index))
    assert again.path == index.path and len(again) == len(index)
    np.testing.assert_array_equal(again.recommend_batch([OPERA])[0], index.recommend_batch([OPERA])[0])
    weights, pca = formula_weights
    embedder = soundalike.Embedder(weights=weights, pca=pca, max_seconds=30)
    copied = pickle.loads(pickle.dumps(embedder))
    assert repr(copied) == repr(embedder)
    with_audio = pickle.loads(pickle.dumps(soundalike.Index(index_dir, embedder=embedder)))
    assert len(with_audio) == 779


def test_audio_bytes_embed_as_the_file_does(formula_weights):
    from conftest import WAV

    weights, pca = formula_weights
    embedder = soundalike.Embedder(weights=weights, pca=pca)
    from_file = embedder.embed(WAV, start=1, end=5)
    from_bytes = embedder.embed(WAV.read_bytes(), start=1, end=5)
    np.testing.assert_array_equal(from_bytes, from_file)
    clip = embedder.embed_clip(WAV, start=1, end=5)
    assert clip["video_id"] == soundalike.file_id(WAV) and clip["labels"] == []
    # The stretch embedded: from 1 s to the file's end (it is shorter than 5 s), as `soundalike embed` says.
    assert clip["start_time"] == 1.0 and clip["end_time"] - clip["start_time"] >= 0.96 * len(from_file)
    np.testing.assert_array_equal(clip["embedding"], from_file)
    with pytest.raises(ValueError, match="video_id= is needed"):
        embedder.embed_clip(WAV.read_bytes())
    with pytest.raises(ValueError, match="the audio's bytes"):
        embedder.embed(b"not audio at all" * 100)
