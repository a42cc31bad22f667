"""Batch inference on a local Ray cluster (soundalike.ray): audio files embedded through map_batches by two
actors give the clips soundalike.embed gives, a bad file is a row with its error, recommendations through
map_batches are recommend_batch's, and a sharded index built by Ray tasks answers as one index's exact scan."""

import os

import numpy as np
import pytest

import soundalike
from conftest import RECORDS, need

EXACT = dict(exact=True, rerank=0)
FILES = 22
RATE = 16_000


@pytest.fixture(scope="module")
def ray():
    ray = need("ray", "ray")
    need("pyarrow", "ray")
    # More logical CPUs than actors: two actors holding both of two CPUs starve the read tasks
    # (docs/scale.md). The workers import this file's classes (pickled by reference) from its folder.
    tests = os.path.dirname(os.path.abspath(__file__))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests}})
    yield ray
    ray.shutdown()


def write_wav(path, samples):
    """A 16-bit mono WAV at 16 kHz."""
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """FILES generated songs (tones and noise, 2 to 4.5 s, each its own) and one file that is not audio."""
    folder = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(7)
    for i in range(FILES):
        seconds = 2.0 + (i % 6) * 0.5
        t = np.arange(int(seconds * RATE)) / RATE
        tone = 0.4 * np.sin(2 * np.pi * (110 + 37 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * (i % 5 + 1) * t))
        write_wav(folder / f"song{i:02d}.wav", tone + 0.05 * rng.standard_normal(t.size))
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really" * 64)
    return folder


class _WithPid:
    """Adds the worker's process id to each row: which actors did the work."""

    def __call__(self, batch):
        table = super().__call__(batch)
        import pyarrow as pa

        return table.append_column("pid", pa.array([os.getpid()] * table.num_rows, type=pa.int64()))


def test_audio_embedded_on_two_actors_is_what_embed_gives(ray, audio_dir, formula_weights):
    import soundalike.ray as sr

    class EmbedWithPid(_WithPid, sr.EmbedBatch):
        pass

    weights, pca = formula_weights
    files = ray.data.read_binary_files(str(audio_dir), include_paths=True)
    clips = files.map_batches(
        EmbedWithPid,
        fn_constructor_kwargs={"weights": str(weights), "pca": str(pca)},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=2,
        batch_format="pyarrow",
    )
    table = clips.to_arrow_refs()
    import pyarrow as pa

    table = pa.concat_tables(ray.get(table))
    rows = {r["video_id"]: r for r in table.to_pylist()}
    assert len(rows) == FILES + 1
    assert len(set(table.column("pid").to_pylist())) == 2, "two worker processes embedded"
    assert os.getpid() not in set(table.column("pid").to_pylist())
    for i in range(FILES):
        path = audio_dir / f"song{i:02d}.wav"
        row = rows[soundalike.file_id(path)]
        assert row["error"] is None
        expected = soundalike.embed(path, weights=weights, pca=pca)
        assert b"".join(row["embedding"]) == expected.tobytes(), f"{path.name}: byte-equal to embed"
        assert row["start_time"] == 0.0 and row["labels"] == []
    broken = rows[soundalike.file_id(audio_dir / "broken.wav")]
    assert broken["embedding"] == [] and "broken.wav" in broken["error"]


def test_recommendations_through_map_batches_are_recommend_batchs(ray, index_dir, clips_file):
    import pyarrow as pa

    import soundalike.arrow as sa
    import soundalike.ray as sr

    table = sa.clips_to_table(soundalike.read_tfrecords(RECORDS))
    ids = table.column("video_id").to_pylist()
    index = soundalike.Index(index_dir)
    expected_ids, expected_sims = index.recommend_batch(ids, k=10)

    by_id = ray.data.from_arrow(pa.table({"video_id": ids})).repartition(8).map_batches(
        sr.RecommendBatch, fn_constructor_args=(str(index_dir),), compute=ray.data.ActorPoolStrategy(size=2), batch_size=100,
        batch_format="pyarrow",
    )
    answered = {r["video_id"]: r for r in by_id.take_all()}
    for row, video_id in enumerate(ids):
        assert answered[video_id]["neighbours"] == list(expected_ids[row])
        np.testing.assert_allclose(answered[video_id]["similarities"], expected_sims[row], atol=1e-6)

    by_embedding = ray.data.from_arrow(table).repartition(8).map_batches(
        sr.RecommendBatch, fn_constructor_args=(str(index_dir),), fn_constructor_kwargs={"k": 5},
        compute=ray.data.ActorPoolStrategy(size=2), batch_size=100, batch_format="pyarrow",
    )
    embeddings = np.stack([c["embedding"] for c in sa.table_to_clips(table)]).astype(np.float32)
    direct_ids, _ = index.recommend_batch(embeddings, k=5)
    answered = {r["video_id"]: r for r in by_embedding.take_all()}
    for row, video_id in enumerate(ids):
        assert answered[video_id]["neighbours"] == list(direct_ids[row])


def test_a_sharded_index_built_by_ray_tasks_answers_as_one_exact_index(ray, tmp_path):
    import soundalike.arrow as sa
    import soundalike.ray as sr
    from soundalike.shards import ShardedIndex, build_shards

    table = sa.clips_to_table(soundalike.read_tfrecords(RECORDS))
    manifest = build_shards(table, tmp_path / "shards", shards=4, ray=True)
    counts = [entry["count"] for entry in manifest["shards"]]
    assert sum(counts) == 779 and min(counts) > 0
    whole = tmp_path / "whole.idx"
    soundalike.build_index(whole, table)
    one = soundalike.Index(whole)
    shards = ShardedIndex(tmp_path / "shards")
    assert len(shards) == 779
    search = soundalike.Search(**EXACT)
    ids = table.column("video_id").to_pylist()
    embeddings = np.stack([c["embedding"] for c in sa.table_to_clips(table)])[::7]
    # The exact scan, and the exact scan with the default re-rank of 20 candidates by their frames.
    for search in (soundalike.Search(**EXACT), soundalike.Search(exact=True)):
        for queries in (ids, embeddings):
            expected_ids, expected_sims = one.recommend_batch(queries, k=10, search=search)
            merged_ids, merged_sims = shards.recommend_batch(queries, k=10, search=search)
            np.testing.assert_allclose(merged_sims, expected_sims, atol=1e-6)
            same = (merged_ids == expected_ids).mean()
            # Equal similarities may be listed in another order: every disagreement must be such a tie.
            for r, c in zip(*np.nonzero(merged_ids != expected_ids)):
                assert np.isclose(expected_sims[r, c], merged_sims[r, c]), (search, r, c)
            assert same > 0.99, search
    search = soundalike.Search(**EXACT)
    # Through map_batches, each worker opening the four shards once.
    import pyarrow as pa

    asked = ray.data.from_arrow(pa.table({"video_id": ids[:50]})).repartition(4).map_batches(
        sr.RecommendBatch, fn_constructor_args=(str(tmp_path / "shards"),), fn_constructor_kwargs=EXACT,
        compute=ray.data.ActorPoolStrategy(size=2), batch_format="pyarrow",
    )
    expected_ids, _ = one.recommend_batch(ids[:50], k=10, search=search)
    for row in asked.take_all():
        assert len(row["neighbours"]) == 10
        assert row["neighbours"][0] == expected_ids[ids.index(row["video_id"])][0]
