"""A process forked after the engine has worked (a fork-based multiprocessing.Pool or DataLoader worker) can ask
everything its parent could: batches over 64 queries and the exact scan (the engine's threads), a graph walk,
a build and an ingest, and its answers equal the parent's. A child that hangs fails the test at its deadline
(then is killed) rather than hanging the run."""

import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
import warnings

import numpy as np
import pytest

import soundalike
from conftest import RECORDS

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="fork() after threads have run is Linux's default for multiprocessing"
)

# How long a child may take to answer: its questions take well under a second; a hang takes for ever.
DEADLINE = 60
OPERA = "xtGmrLOsjHk"


def questions(index, ids, embeddings):
    """What a child asks: a batch of ids and one of embeddings, both over 64 queries (the exact scan's groups
    of 64 then run in parallel, on the package's pool), and what runs on the calling thread: the exact scan, a
    graph walk and an embedding for one clip, the index's length and its info."""
    batch_ids, batch_scores = index.recommend_batch(ids, k=10)
    rows_ids, rows_scores = index.recommend_batch(embeddings, k=5, search=soundalike.Search(exact=True))
    hits = {
        "exact": index.recommend(id=OPERA, k=10, search=soundalike.Search(exact=True)),
        "walk": index.recommend(id=OPERA, k=10, search=soundalike.Search(ef=40)),
        "embedding": index.recommend(embedding=embeddings[0], k=10),
    }
    return {
        "batch": (batch_ids.tolist(), batch_scores.tolist()),
        "embeddings": (rows_ids.tolist(), rows_scores.tolist()),
        **{name: [(hit["video_id"], hit["distance"]) for hit in found] for name, found in hits.items()},
        "len": len(index),
        "info": index.info(),
    }


@pytest.fixture(scope="module")
def asked(index_dir, clips):
    """The index, its questions (200 ids, 100 embeddings), and the parent's answers, asked before any fork."""
    index = soundalike.Index(index_dir)
    ids = [clip["video_id"] for clip in clips[:200]]
    embeddings = np.array([clip["embedding"] for clip in clips[:100]], dtype=np.uint8)
    assert len(ids) > 64 and len(embeddings) > 64
    return index, ids, embeddings, questions(index, ids, embeddings)


def in_child(work):
    """What `work()` returns in a child made by os.fork(), sent back through a pipe; the test fails when the
    child raises, or has not answered within DEADLINE seconds (it is then killed)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns that a fork of a process with threads may deadlock: what this file tests.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                payload = pickle.dumps(("ok", work()))
            except BaseException:
                payload = pickle.dumps(("raised", traceback.format_exc()))
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        finally:
            # Nothing of the parent's (pytest's exit handlers) runs in the child.
            os._exit(0)
    os.close(write_end)
    received = []
    deadline = time.monotonic() + DEADLINE
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the forked child has not answered in {DEADLINE} s: it hangs")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            received.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    status, value = pickle.loads(b"".join(received))
    if status == "raised":
        pytest.fail(f"the forked child raised:\n{value}")
    return value


def test_a_forked_child_answers_as_its_parent(asked):
    index, ids, embeddings, expected = asked
    assert in_child(lambda: questions(index, ids, embeddings)) == expected
    # And a grandchild, forked from a child that has asked.
    def ask_and_fork_again():
        return [questions(index, ids, embeddings), in_child(lambda: questions(index, ids, embeddings))]

    assert in_child(ask_and_fork_again) == [expected, expected]
    # The parent goes on answering after its children have come and gone.
    assert questions(index, ids, embeddings) == expected


# What a pool's workers find: set before the pool forks them.
ASKED = {}


def ask_in_worker(_):
    return questions(ASKED["index"], ASKED["ids"], ASKED["embeddings"])


def test_a_fork_pool_worker_answers_as_its_parent(asked):
    index, ids, embeddings, expected = asked
    ASKED.update(index=index, ids=ids, embeddings=embeddings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # Leaving the block terminates the workers, hung or not.
        with multiprocessing.get_context("fork").Pool(2) as pool:
            try:
                answers = pool.map_async(ask_in_worker, range(4), chunksize=1).get(timeout=DEADLINE)
            except multiprocessing.TimeoutError:
                pytest.fail(f"the pool's workers have not answered in {DEADLINE} s: they hang")
    assert answers == [expected] * 4


def test_a_fork_while_other_threads_ask(asked):
    """Threads asking at the moment of the fork hold the engine's locks and threads then; the child has
    neither those threads nor their unlocks, and must not wait for them."""
    index, ids, embeddings, expected = asked
    stop = threading.Event()
    failures = []

    def keep_asking():
        try:
            while not stop.is_set():
                index.recommend_batch(ids, k=10)
                index.recommend(id=OPERA, k=10)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=keep_asking) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            assert in_child(lambda: questions(index, ids, embeddings)) == expected
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures


def test_a_forked_child_ingests_and_builds(asked, clips, tmp_path):
    """The ingest's thread and the build's own pools start in the child, and give what they give its parent."""
    index, ids, embeddings, _ = asked

    def ingest_and_build(where):
        read = [clip["video_id"] for clip in soundalike.read_tfrecords(RECORDS)]
        built = soundalike.build_index(where, clips[:300])
        small = soundalike.Index(where)
        answers = small.recommend_batch(ids[:100], k=5)
        return read, built, answers[0].tolist(), answers[1].tolist()

    expected = ingest_and_build(tmp_path / "parent.idx")
    assert in_child(lambda: ingest_and_build(tmp_path / "child.idx")) == expected


def test_a_clip_reader_from_before_the_fork_says_to_read_again(asked):
    reader = soundalike.read_tfrecords(RECORDS)
    first = next(reader)

    def read_on():
        try:
            next(reader)
        except RuntimeError as error:
            return str(error)
        return "no error"

    said = in_child(read_on)
    assert "read_tfrecords in this process" in said
    # The parent's reader is untouched by the child's attempt and its exit.
    assert [first["video_id"]] + [clip["video_id"] for clip in reader] == [
        clip["video_id"] for clip in soundalike.read_tfrecords(RECORDS)
    ]
