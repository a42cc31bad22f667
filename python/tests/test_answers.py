"""Answers from Python equal the command line's `--json` on the fixture index: by id, by embedding, in batches,
and for audio, with the same ids in the same order and distances within 1e-6."""

import json

import numpy as np
import pytest

import soundalike
from conftest import WAV

OPERA = "xtGmrLOsjHk"


def some_ids(clips, count):
    step = len(clips) // count
    return [clip["video_id"] for clip in clips[::step][:count]]


def assert_same_answer(hits, cli_results, what):
    assert [h["video_id"] for h in hits] == [r["video_id"] for r in cli_results], what
    for hit, result in zip(hits, cli_results):
        assert list(hit) == list(result), f"{what}: the keys of a result, in order"
        assert hit["distance"] == pytest.approx(result["distance"], abs=1e-6), what
        if "similarity" in result:
            assert hit["similarity"] == pytest.approx(result["similarity"], abs=1e-6), what
        for key in ("rank", "labels", "label_names", "start_time", "end_time", "url"):
            assert hit[key] == result[key], f"{what}: {key}"
        if "matched_at" in result:
            assert hit["matched_at"] == pytest.approx(result["matched_at"], abs=1e-9), what


def test_len_and_info_equal_the_clis(cli, index_dir):
    index = soundalike.Index(index_dir)
    info = cli.json_lines("info", "--index", index_dir, "--json")[0]
    assert len(index) == info["settings"]["clips"] == 779
    assert index.info() == info
    assert "clips=779" in repr(index)


def test_answers_by_id_equal_the_clis(cli, index_dir, clips):
    index = soundalike.Index(index_dir)
    for video_id in some_ids(clips, 8):
        hits = index.recommend(id=video_id)
        assert len(hits) == 10
        assert video_id not in [h["video_id"] for h in hits], "never its own neighbour"
        answer = cli.json_lines("recommend", "--index", index_dir, "--id", video_id, "--json")[0]
        assert_same_answer(hits, answer["results"], video_id)


@pytest.mark.parametrize(
    "flags, options",
    [
        (["--exact", "--rerank", "0", "-k", "5"], dict(search=soundalike.Search(exact=True, rerank=0), k=5)),
        (["--label", "Opera,Choir", "-k", "3"], dict(labels=["Opera", "Choir"], k=3)),
        (["--label", "Opera,28", "-k", "3"], dict(labels="Opera,28", k=3)),
        (["--ef", "40", "-k", "4"], dict(search=soundalike.Search(ef=40), k=4)),
        (["--search-k", "500", "-k", "6"], dict(search=soundalike.Search(search_k=500), k=6)),
        (["--rerank", "50"], dict(search=soundalike.Search(rerank=50))),
    ],
)
def test_options_match_the_clis_flags(cli, index_dir, flags, options):
    hits = soundalike.Index(index_dir).recommend(id=OPERA, **options)
    answer = cli.json_lines("recommend", "--index", index_dir, "--id", OPERA, "--json", *flags)[0]
    assert_same_answer(hits, answer["results"], " ".join(flags))


def test_answers_by_embedding_equal_the_clis(cli, index_dir, clips, tmp_path):
    index = soundalike.Index(index_dir)
    opera = next(c for c in clips if c["video_id"] == OPERA)
    # Three rows of another clip in front: asked from row 3, the opera clip's own rows.
    longer = dict(opera, embedding=clips[0]["embedding"][:3] + opera["embedding"])
    file = tmp_path / "opera.json"
    file.write_text(json.dumps(longer))
    rows = np.array(longer["embedding"], dtype=np.uint8)
    assert rows.shape == (13, 128)
    for start, k in [(None, 7), (3, 5)]:
        flags = ["-k", str(k)] + ([] if start is None else ["--start", str(start)])
        answer = cli.json_lines("recommend", "--index", index_dir, "--embedding", file, "--json", *flags)[0]
        hits = index.recommend(embedding=rows, k=k, start=start)
        assert_same_answer(hits, answer["results"], f"embedding {flags}")
        # A clip dict, and rows of another number type, are the same question.
        assert index.recommend(embedding=longer, k=k, start=start) == hits
        assert index.recommend(embedding=rows.astype(np.float64).tolist(), k=k, start=start) == hits
    # Asked from outside the index, the clip finds itself first.
    assert index.recommend(embedding=rows, k=1, start=3)[0]["video_id"] == OPERA


def cli_batch(cli, index_dir, lines, tmp_path, *flags):
    file = tmp_path / "batch.txt"
    file.write_text("".join(line + "\n" for line in lines))
    return cli.json_lines("recommend", "--index", index_dir, "--batch", file, "--json", *flags)


def test_batches_of_ids_equal_the_clis(cli, index_dir, clips, tmp_path):
    index = soundalike.Index(index_dir)
    queries = some_ids(clips, 150)
    ids, sims = index.recommend_batch(queries, k=10)
    assert ids.shape == sims.shape == (150, 10)
    assert ids.dtype == object and sims.dtype == np.float32
    answers = cli_batch(cli, index_dir, queries, tmp_path)
    for row, answer in enumerate(answers):
        results = answer["results"]
        assert answer["query"] == queries[row]
        assert list(ids[row]) == [r["video_id"] for r in results]
        np.testing.assert_allclose(sims[row], [r["similarity"] for r in results], atol=1e-6)
    # distances=True: the distances instead, and one query alone answers as in the batch.
    _, distances = index.recommend_batch(queries[:3], k=10, distances=True)
    for row in range(3):
        one = index.recommend(id=queries[row])
        np.testing.assert_allclose(distances[row], [h["distance"] for h in one], atol=1e-6)


def test_batches_of_embeddings_equal_the_clis(cli, index_dir, clips, tmp_path):
    index = soundalike.Index(index_dir)
    chosen = clips[5::40]
    rows = np.array([c["embedding"] for c in chosen], dtype=np.uint8)
    assert rows.shape == (len(chosen), 10, 128)
    ids, sims = index.recommend_batch(rows, k=8, labels=["Pop music", "Rock music"], search=soundalike.Search(ef=30))
    lines = [json.dumps(c["embedding"]) for c in chosen]
    answers = cli_batch(cli, index_dir, lines, tmp_path, "-k", "8", "--label", "Pop music,Rock music", "--ef", "30")
    assert len(answers) == len(chosen)
    for row, answer in enumerate(answers):
        results = answer["results"]
        found = [i for i in ids[row] if i is not None]
        assert found == [r["video_id"] for r in results]
        np.testing.assert_allclose(sims[row][: len(found)], [r["similarity"] for r in results], atol=1e-6)
        # Fewer than k neighbours (a label filter): None and NaN fill the row.
        assert all(i is None for i in ids[row][len(found):])
        assert np.isnan(sims[row][len(found):]).all()


def test_a_label_filter_with_fewer_clips_than_k_fills_with_none(index_dir):
    index = soundalike.Index(index_dir)
    hits = index.recommend(id=OPERA, labels=["Opera"], k=500)
    assert 0 < len(hits) < 500
    ids, sims = index.recommend_batch([OPERA], labels=["Opera"], k=500)
    assert list(ids[0][: len(hits)]) == [h["video_id"] for h in hits]
    assert ids[0][len(hits)] is None and np.isnan(sims[0][len(hits)])


def test_empty_batch_and_a_k_past_the_index(index_dir):
    index = soundalike.Index(index_dir)
    ids, sims = index.recommend_batch([], k=4)
    assert ids.shape == sims.shape == (0, 4)
    # The arrays are as wide as the index holds clips, not as k asks; a clip has all the others as neighbours.
    ids, sims = index.recommend_batch([OPERA], k=10**12)
    assert ids.shape == (1, 779)
    assert ids[0][777] is not None and ids[0][778] is None and np.isnan(sims[0][778])
    assert len(index.recommend(id=OPERA, k=10**12)) == 778


def test_embed_and_audio_equal_the_clis(cli, index_dir, formula_weights):
    weights, pca = formula_weights
    vggish = soundalike.Embedder(weights=weights, pca=pca)
    rows = vggish.embed(WAV)
    assert np.array_equal(rows, soundalike.embed(WAV, weights=weights, pca=pca)), "the shorthand"
    clip = cli.json_lines("embed", WAV, "--weights", weights, "--pca", pca, "-q")[0]
    assert rows.dtype == np.uint8
    np.testing.assert_array_equal(rows, np.array(clip["embedding"], dtype=np.uint8))
    # The same stretch asked by start and end.
    part = vggish.embed(WAV, start=1, end=2)
    clip = cli.json_lines("embed", WAV, "--start", "1", "--end", "2", "--weights", weights, "--pca", pca, "-q")[0]
    np.testing.assert_array_equal(part, np.array(clip["embedding"], dtype=np.uint8))

    index = soundalike.Index(index_dir, embedder=vggish)
    hits = index.recommend(audio=WAV, k=6)
    answer = cli.json_lines(
        "recommend", "--index", index_dir, "--audio", WAV, "--weights", weights, "--pca", pca, "-k", "6", "--json", "-q"
    )[0]
    assert_same_answer(hits, answer["results"], "audio")
    assert all(h["matched_at"] == 0.0 for h in hits), "two seconds of audio: one window"


@pytest.mark.parametrize("flags, search", [([], None), (["--rerank", "0"], soundalike.Search(rerank=0))])
def test_explanations_equal_the_clis(cli, index_dir, clips, tmp_path, flags, search):
    """explain=True gives each hit the CLI's `--explain` object, number for number; the shares and the rest add
    up to the hit's similarity; without it, no key."""
    index = soundalike.Index(index_dir)
    opera = next(c for c in clips if c["video_id"] == OPERA)
    file = tmp_path / "opera.json"
    file.write_text(json.dumps(opera))
    for query, asked in [(["--id", OPERA], dict(id=OPERA)), (["--embedding", file], dict(embedding=opera))]:
        answer = cli.json_lines("recommend", "--index", index_dir, *query, "--explain", "--json", "-k", "5", *flags)
        hits = index.recommend(**asked, k=5, search=search, explain=True)
        assert_same_answer(hits, answer[0]["results"], f"explained {query[0]}")
        for hit, result in zip(hits, answer[0]["results"]):
            assert hit["explain"] == result["explain"], f"{query[0]}: the explanation"
            why = hit["explain"]
            total = sum(label["share"] for label in why["labels"]) + why["rest"]
            assert total == pytest.approx(hit["similarity"], abs=1e-4)
            assert why["compared"] == ("vectors" if flags else "frames")
        assert "explain" not in index.recommend(**asked, k=1, search=search)[0]
