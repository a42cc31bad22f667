"""The interpreter's lock is released while the engine works: two threads asking at once finish in about half
the time one thread takes for the same questions (on two idle cores), as two processes do."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import soundalike


def some_ids(clips):
    return [clip["video_id"] for clip in clips]


def ask(index, groups):
    for group in groups:
        # Groups of 60: the exact scan answers up to 64 queries on the calling thread alone.
        index.recommend_batch(group, k=10)


# The same work in a process of its own, started at an agreed moment (time.monotonic is the same clock in every
# process on Linux): what the machine gives two workers that share no interpreter lock.
WORKER = """
import json, sys, time
import soundalike
index_dir, groups, start = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
index = soundalike.Index(index_dir)
index.recommend_batch(groups[0], k=10)
while time.monotonic() < start:
    time.sleep(0.001)
for group in groups:
    index.recommend_batch(group, k=10)
print(time.monotonic())
"""


def two_processes(index_dir, halves):
    start = time.monotonic() + 1.5
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(index_dir), json.dumps(half), str(start)],
                         stdout=subprocess.PIPE, text=True)
        for half in halves
    ]
    ends = [float(worker.communicate()[0]) for worker in workers]
    return max(ends) - start


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_two_threads_answer_about_twice_as_fast_as_one(index_dir, clips):
    index = soundalike.Index(index_dir)
    ids = some_ids(clips)
    # About 0.2 s of work for one thread: at 0.1 s, one busy moment moved a side's best round by a third.
    groups = [ids[i : i + 60] for i in range(0, 720, 60)] * 6
    halves = groups[::2], groups[1::2]
    ask(index, groups[:2])  # warm: the index's pages in memory

    def timed(work):
        started = time.perf_counter()
        work()
        return time.perf_counter() - started

    def two_threads():
        threads = [threading.Thread(target=ask, args=(index, half)) for half in halves]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Best of several rounds, alternating, so that a busy moment slows every side alike. Two processes say what
    # the machine can give at the moment (about 2x on two idle cores; less when other work holds the cores):
    # two threads must get most of it, which they cannot while the lock is held (1x). "Most" is 0.65: on an idle
    # machine two threads measured 1.23x to 1.62x against the processes' 1.39x to 2.07x in the same runs (they
    # share one allocator and one map's page tables), and a held lock stays at 1x. The next test catches a held
    # lock at any load.
    one, threads, processes = [], [], []
    for _ in range(5):
        one.append(timed(lambda: ask(index, groups)))
        threads.append(timed(two_threads))
        processes.append(two_processes(index_dir, halves))
    by_threads, by_processes = min(one) / min(threads), min(one) / min(processes)
    report = f"one thread {min(one):.3f} s, two threads {by_threads:.2f}x, two processes {by_processes:.2f}x"
    print(report)
    assert by_threads > 0.65 * by_processes, report
    if by_processes > 1.7:
        assert by_threads > 1.3, report


def test_python_runs_while_a_search_runs(index_dir, clips):
    """A long batch on another thread leaves this one free to run Python code."""
    index = soundalike.Index(index_dir)
    ids = some_ids(clips) * 20
    started, done = threading.Event(), threading.Event()

    def search():
        started.set()
        index.recommend_batch(ids, k=10, search=soundalike.Search(exact=True, rerank=100))
        done.set()

    thread = threading.Thread(target=search)
    thread.start()
    started.wait()
    spins = 0
    while not done.is_set():
        spins += 1
    thread.join()
    # Had the search held the lock, this loop would only have run once it had finished: a handful of spins.
    assert spins > 10_000, f"this thread ran {spins} loops while the batch was searched"
