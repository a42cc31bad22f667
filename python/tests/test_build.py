"""Clips read and an index built from Python are those the command line makes: the same clips from the same
records, and an index that answers as the command line's does."""

import numpy as np
import pytest

import soundalike
from conftest import RECORDS

OPERA = "xtGmrLOsjHk"


def test_read_tfrecords_yields_the_clips_ingest_writes(clips):
    reader = soundalike.read_tfrecords(RECORDS)
    assert reader.stats is None
    read = list(reader)
    assert len(read) == len(clips) == 779
    for mine, theirs in zip(read, clips):
        assert list(mine) == list(theirs), "the keys ingest writes, in its order"
        assert mine["video_id"] == theirs["video_id"]
        assert mine["start_time"] == theirs["start_time"] and mine["end_time"] == theirs["end_time"]
        assert mine["labels"] == theirs["labels"]
        assert mine["embedding"].dtype == np.uint8 and mine["embedding"].shape == (10, 128)
        np.testing.assert_array_equal(mine["embedding"], np.array(theirs["embedding"]))
    assert reader.stats == dict(
        files=reader.stats["files"], records=1948, kept=779, not_music=reader.stats["not_music"],
        too_short=6, corrupt=0, bytes=reader.stats["bytes"],
    )
    assert reader.stats["files"] == 387


def test_read_tfrecords_rules_and_frames(cli, tmp_path):
    jazz = tmp_path / "jazz.jsonl"
    cli.run("ingest", RECORDS, "--music", "Jazz,Blues", "--frames", "5", "-o", jazz, "-q")
    expected = [line for line in jazz.read_text().splitlines() if line]
    read = list(soundalike.read_tfrecords([RECORDS / "bal_train", RECORDS / "eval"], music="Jazz,Blues", frames=5))
    assert len(read) == len(expected) > 0
    assert all(c["embedding"].shape == (5, 128) for c in read)


def test_stopping_early_stops_the_ingest():
    reader = soundalike.read_tfrecords(RECORDS)
    first = [next(reader) for _ in range(3)]
    assert len(first) == 3
    del reader  # the ingest thread is stopped and joined, not left reading


def answers(index, ids):
    return {video_id: [(h["video_id"], h["distance"]) for h in index.recommend(id=video_id)] for video_id in ids}


def assert_same_answers(mine, theirs):
    assert mine.keys() == theirs.keys()
    for video_id in mine:
        assert [i for i, _ in mine[video_id]] == [i for i, _ in theirs[video_id]], video_id
        np.testing.assert_allclose([d for _, d in mine[video_id]], [d for _, d in theirs[video_id]], atol=1e-6)


def test_an_index_built_from_python_answers_as_the_clis(cli, index_dir, clips_file, tmp_path):
    built = soundalike.build_index(tmp_path / "py.idx", soundalike.read_tfrecords(RECORDS))
    assert built["clips"] == built["read"] == built["added"] == 779 and built["replaced"] == 0
    # 779 clips are scanned exactly by default: no walk breadth to measure.
    assert built["held_out"] is None and "held_out" not in soundalike.Index(tmp_path / "py.idx").info()["settings"]
    mine, theirs = soundalike.Index(tmp_path / "py.idx"), soundalike.Index(index_dir)
    assert mine.info()["settings"] == theirs.info()["settings"]
    ids = [OPERA, "dRvVBKLxCgU", "k9TtEo5P2Zc", "fGysoS5hmhw"]
    assert_same_answers(answers(mine, ids), answers(theirs, ids))
    # From the clip file itself, and with options as `index` takes them.
    soundalike.build_index(tmp_path / "file.idx", clips_file, projection="none", metric="euclidean", trees=3)
    cli.run("index", "--index", tmp_path / "cli.idx", clips_file, "--projection", "none", "--metric", "euclidean",
            "--trees", "3", "-q")
    from_file, by_cli = soundalike.Index(tmp_path / "file.idx"), soundalike.Index(tmp_path / "cli.idx")
    assert from_file.info()["settings"] == by_cli.info()["settings"]
    assert_same_answers(answers(from_file, ids), answers(by_cli, ids))


def test_clips_as_plain_lists_and_an_append(clips, tmp_path):
    path = tmp_path / "lists.idx"
    soundalike.build_index(path, (c for c in clips[:400]))
    assert len(soundalike.Index(path)) == 400
    added = soundalike.build_index(path, clips[380:], append=True)
    assert added["clips"] == 779 and added["replaced"] == 20
    assert soundalike.Index(path).recommend(id=OPERA, k=1)


def test_a_bad_clip_or_a_failing_iterable_leaves_the_index_as_it_was(clips, tmp_path):
    path = tmp_path / "kept.idx"
    soundalike.build_index(path, clips[:50])
    bad = dict(clips[60])
    del bad["embedding"]
    with pytest.raises(ValueError, match=r"clips\[10\]: the clip has no \"embedding\""):
        soundalike.build_index(path, clips[50:60] + [bad])

    def failing():
        yield clips[70]
        raise RuntimeError("the notebook's generator broke")

    with pytest.raises(RuntimeError, match="generator broke"):
        soundalike.build_index(path, failing())
    wrong = dict(clips[61], labels=[9999])
    with pytest.raises(ValueError, match="not an AudioSet class"):
        soundalike.build_index(path, [wrong])
    with pytest.raises(ValueError):
        soundalike.build_index(path, clips[:5], projection="learn", append=True)
    assert len(soundalike.Index(path)) == 50
