#!/usr/bin/env python3
"""Measures soundalike against its peers side by side and writes BENCHMARKS.md.

usage: python3 scripts/bench.py [--runs N] [--peers-python PATH] [--data DIR]

--data: the AudioSet tree holding audioset_v1_embeddings/{bal_train,eval} (default ../shared/audioset/real).
--peers-python: a Python with tensorflow-cpu, for the notebook's path. Create it outside the repo:
    python3 -m venv ../peers-venv && ../peers-venv/bin/pip install tensorflow-cpu annoy hnswlib numpy
Every figure is the median of --runs runs (default 5; 3 for the slow TensorFlow path), each a whole process,
timed by /usr/bin/time-like rusage (wall seconds and peak RSS).
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "soundalike"


def timed(cmd):
    """Runs cmd; returns (wall seconds, stderr). Fails the script if the command fails."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr.decode()}")
    return wall, proc.stderr.decode()


def measure(cmd, runs):
    walls, rss, err = [], [], ""
    for _ in range(runs):
        # A fresh wrapper per run reports that run's own wall time and peak RSS, without its own start-up.
        wrapped = [sys.executable, "-c", RSS_WRAPPER, *map(str, cmd)]
        _, err = timed(wrapped)
        walls.append(float(re.search(r"wall_s=([\d.]+)", err).group(1)))
        rss.append(float(re.search(r"maxrss_mb=([\d.]+)", err).group(1)))
    return statistics.median(walls), statistics.median(rss), err


# Runs a command and prints its wall time and peak RSS (ru_maxrss of its only child) on stderr.
RSS_WRAPPER = """
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
sys.stderr.write(f"\\nwall_s={time.perf_counter() - t:.6f}\\n")
sys.stderr.write(p.stderr.decode())
sys.stderr.write(f"\\nmaxrss_mb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f}\\n")
sys.exit(p.returncode)
"""


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}; {rustc}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--peers-python", default=str(ROOT.parent / "peers-venv" / "bin" / "python"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "audioset" / "real"))
    args = parser.parse_args()

    data = Path(args.data) / "audioset_v1_embeddings"
    bal_train, evaluation = data / "bal_train", data / "eval"
    if not bal_train.is_dir():
        sys.exit(f"{bal_train} not found: pass --data")
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    inputs = [bal_train, evaluation]
    input_mb = sum(p.stat().st_size for d in inputs for p in d.glob("*.tfrecord")) / 1e6
    work = Path(tempfile.mkdtemp(prefix="soundalike-bench-"))
    tarball = work / "features.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=6) as tar:
        for d in inputs:
            for p in sorted(d.glob("*.tfrecord")):
                tar.add(p, arcname=f"audioset_v1_embeddings/{d.name}/{p.name}")

    rows = []
    ours_json = [BIN, "ingest", "-q", "--music", "names", "--format", "json", "-o", work / "ours.json", *inputs]
    wall, rss, _ = measure(ours_json, args.runs)
    rows.append(("soundalike ingest, notebook's rule, JSON array to a file", wall, rss))
    ours_wall = wall
    wall, rss, _ = measure([BIN, "ingest", "-q", "-o", work / "ours.jsonl", *inputs], args.runs)
    rows.append(("soundalike ingest, default (ontology rule, JSON Lines) to a file", wall, rss))
    wall, rss, _ = measure([BIN, "ingest", "-q", "-o", work / "tar.jsonl", tarball], args.runs)
    rows.append(("soundalike ingest of the same files as a features.tar.gz", wall, rss))
    wall, rss, _ = measure([BIN, "ingest", "-q", "--music", "all", "-o", os.devnull, *inputs], args.runs)
    rows.append(("soundalike ingest, every clip, output discarded (decode cost)", wall, rss))

    notebook = None
    peers_python = Path(args.peers_python)
    if peers_python.exists():
        cmd = [peers_python, ROOT / "scripts/peers/notebook_ingest.py", ROOT / "src/data/class_labels_indices.csv",
               work / "notebook.json", *inputs]
        runs = max(3, args.runs // 2)
        wall, rss, err = measure(cmd, runs)
        loop = float(re.search(r"loop_seconds=([\d.]+)", err).group(1))
        rows.append(("notebook: tf.data + SequenceExample.ParseFromString + json.dump", wall, rss))
        notebook = (wall, loop)
        tf_version = subprocess.run([peers_python, "-c", "import tensorflow as tf; print(tf.__version__)"],
                                    capture_output=True, text=True).stdout.strip()
    else:
        print(f"no {peers_python}: skipping the TensorFlow notebook path (see --help)", file=sys.stderr)

    lines = [
        "# Benchmarks",
        "",
        "Regenerated by `python3 scripts/bench.py` (this file is overwritten). Medians of several runs, each a",
        "whole process, measured side by side in one run of the script.",
        "",
        f"- Machine: {machine()}",
        f"- soundalike {subprocess.run([BIN, '--version'], capture_output=True, text=True).stdout.strip()}",
    ]
    if notebook:
        lines.append(f"- TensorFlow {tf_version} (tensorflow-cpu from PyPI), Python {platform.python_version()}")
    lines += [
        f"- Data: the real bal_train split and the eval files in `{data}`: {input_mb:.1f} MB of TFRecords",
        f"- Runs: {args.runs} (TensorFlow: {max(3, args.runs // 2)})",
        "",
        "## ingest",
        "",
        "| command | wall s (median) | MB/s | peak RSS MB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, wall, rss in rows:
        lines.append(f"| {name} | {wall:.3f} | {input_mb / wall:.0f} | {rss:.0f} |")
    if notebook:
        wall, loop = notebook
        lines += [
            "",
            f"Speed-up on the same files, same rule, same output form: **{wall / ours_wall:.0f}x** the notebook's",
            f"whole process ({wall:.2f} s), **{loop / ours_wall:.0f}x** its parse-and-dump loop alone ({loop:.2f} s,",
            "without TensorFlow's import and start-up).",
        ]
    lines += ["", open(ROOT / "scripts" / "bench_notes.md").read().strip(), ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
