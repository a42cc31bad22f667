"""Every failure is a Python exception of the kind the library reports, with the message the command line
prints after `error: `; nothing crashes the interpreter."""

import shutil

import numpy as np
import pytest

import soundalike
from conftest import WAV

OPERA = "xtGmrLOsjHk"


def test_a_missing_index_is_file_not_found(cli, tmp_path):
    missing = tmp_path / "nothing.idx"
    with pytest.raises(FileNotFoundError) as raised:
        soundalike.Index(missing)
    assert str(raised.value) == cli.error("info", "--index", missing)
    assert "no index at" in str(raised.value)


def test_an_unknown_id_is_a_key_error(cli, index_dir):
    index = soundalike.Index(index_dir)
    with pytest.raises(KeyError) as raised:
        index.recommend(id="no-such-clip")
    message = raised.value.args[0]
    assert message == cli.error("recommend", "--index", index_dir, "--id", "no-such-clip")
    assert "no clip 'no-such-clip'" in message
    # In a batch, the query's position is named.
    with pytest.raises(KeyError) as raised:
        index.recommend_batch([OPERA, "no-such-clip"])
    assert raised.value.args[0] == "queries[1]: " + message


def test_bad_input_is_a_value_error(cli, index_dir, tmp_path):
    index = soundalike.Index(index_dir)
    rows = np.ones((10, 5), dtype=np.uint8)
    file = tmp_path / "short-rows.json"
    file.write_text(str(rows.tolist()))
    with pytest.raises(ValueError) as raised:
        index.recommend(embedding=rows)
    # The command line names the file in front of the same message.
    assert cli.error("recommend", "--index", index_dir, "--embedding", file) == f"{file}: {raised.value}"

    with pytest.raises(ValueError) as raised:
        index.recommend(id=OPERA, labels=["Jaz"])
    assert "unknown label 'Jaz'; did you mean 'Jazz'" in str(raised.value)
    # The command line's parser says it for its option, in front of the same words.
    assert str(raised.value) in cli.run("recommend", "--index", index_dir, "--id", OPERA, "--label", "Jaz",
                                        check=False).stderr

    for bad in [dict(k=0), dict(start=2)]:
        with pytest.raises(ValueError):
            index.recommend(id=OPERA, **bad)
    # A search is checked when it is made, before any question.
    for bad in [dict(ef=0), dict(ef=5, exact=True), dict(rerank=-1)]:
        with pytest.raises(ValueError):
            soundalike.Search(**bad)
    # The options of an audio back end go with the Embedder now, not with each question.
    with pytest.raises(TypeError):
        index.recommend(id=OPERA, weights="vggish.pth")
    with pytest.raises(ValueError, match="exactly one query"):
        index.recommend()
    with pytest.raises(ValueError, match="exactly one query"):
        index.recommend(id=OPERA, embedding=rows)
    with pytest.raises(ValueError):
        index.recommend(embedding=np.ones(128))
    with pytest.raises(ValueError):
        index.recommend_batch("xtGmrLOsjHk")


def test_audio_errors(cli, index_dir, tmp_path, monkeypatch, formula_weights):
    weights, pca = formula_weights
    # Not audio: ValueError, with the command line's message.
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a WAV at all")
    with pytest.raises(ValueError) as raised:
        soundalike.Embedder(weights=weights, pca=pca).embed(not_audio)
    assert str(raised.value) == cli.error("embed", not_audio, "--weights", weights, "--pca", pca, "-q")
    # No such audio file.
    with pytest.raises(FileNotFoundError):
        soundalike.embed(tmp_path / "absent.wav", weights=weights, pca=pca)
    # Weights nowhere to be found: FileNotFoundError saying where to get them.
    monkeypatch.delenv("SOUNDALIKE_WEIGHTS", raising=False)
    monkeypatch.delenv("SOUNDALIKE_PCA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as raised:
        soundalike.embed(WAV)
    assert "VGGish's files were not found" in str(raised.value)
    with pytest.raises(FileNotFoundError):
        soundalike.Index(index_dir).recommend(audio=WAV)
    # Options that go with audio only.
    with pytest.raises(ValueError, match="goes with audio="):
        soundalike.Index(index_dir).recommend(id=OPERA, end=3)
    with pytest.raises(ValueError) as raised:
        soundalike.embed(WAV, start=3, end=1, weights=weights, pca=pca)
    assert "is not after" in str(raised.value)


def test_a_damaged_index_is_a_damaged_index_error(cli, index_dir, tmp_path):
    copy = tmp_path / "damaged.idx"
    shutil.copytree(index_dir, copy)
    data = copy / "data.mdb"
    size = data.stat().st_size
    with open(data, "r+b") as file:
        file.truncate(size // 2)
    with pytest.raises(soundalike.DamagedIndexError) as raised:
        soundalike.Index(copy)
    # The library's message, which the command line ends with its own advice to its users.
    hint = " (rebuild it with `soundalike index`)"
    assert str(raised.value) + hint == cli.error("recommend", "--index", copy, "--id", OPERA)
    assert "is damaged" in str(raised.value) and "soundalike index" not in str(raised.value)
    assert isinstance(raised.value, Exception)


def test_corrupt_records_are_a_value_error_or_warnings(tmp_path):
    source = (tmp_path / "good.tfrecord")
    from conftest import RECORDS

    good = RECORDS / "eval" / "xt.tfrecord"
    data = good.read_bytes()
    # A flipped byte inside the first record's data: its CRC no longer matches.
    broken = bytearray(data)
    broken[40] ^= 0xFF
    source.write_bytes(bytes(broken) + data)
    with pytest.raises(ValueError) as raised:
        list(soundalike.read_tfrecords(source, music="all"))
    assert "good.tfrecord" in str(raised.value)
    with pytest.warns(UserWarning, match="skipped"):
        kept = list(soundalike.read_tfrecords(source, music="all", skip_corrupt=True))
    whole = list(soundalike.read_tfrecords(good, music="all"))
    assert [c["video_id"] for c in kept] == [c["video_id"] for c in whole][1:] + [c["video_id"] for c in whole]
    with pytest.raises(FileNotFoundError):
        soundalike.read_tfrecords(tmp_path / "absent.tfrecord")
    with pytest.raises(ValueError):
        soundalike.read_tfrecords(good, music="Jaz")
