#!/usr/bin/env python3
"""Measures soundalike against its peers side by side and writes its own sections of docs/bench-generated.md.

usage: python3 scripts/bench.py [--runs N] [--peers-python PATH] [--data DIR] [--scale 100000,300000,1000000]
                                [--scale-data DIR] [--scale-peers N] [--held-out 100000,300000,1000000]
                                [--output FILE]

What it writes: the sections it measures, each between the lines `<!-- bench.py: begin NAME -->` and
`<!-- bench.py: end NAME -->` of --output (default docs/bench-generated.md): setup (machine, versions, data),
ingest, recommend (bal_train against Annoy and hnswlib), scale (unless --scale ''), held-out (unless
--held-out ''). A section already in the file is replaced in place; a missing one is added at the end; every
line outside the markers, and every section this run does not measure, is kept as it was. It never writes
BENCHMARKS.md or docs/bench-log.md: the current figures there are copied from a run by hand, with its commit,
date and machine state (each generated section starts with the run's commit and date).

--data: the AudioSet tree holding audioset_v1_embeddings/{bal_train,eval} (default ../shared/audioset/real).
--peers-python: a Python with tensorflow-cpu, for the notebook's path. Create it outside the repo:
    python3 -m venv ../peers-venv && ../peers-venv/bin/pip install tensorflow-cpu annoy hnswlib numpy
Every figure is the median of --runs runs (default 5; 3 for the slow TensorFlow path), each a whole process,
timed by /usr/bin/time-like rusage (wall seconds and peak RSS).

The scale runs generate synthetic music clips in the release's layout as a features.tar.gz
(`examples/synth.rs`, resampled from bal_train) under --scale-data, once, and then measure ingest from the
tar.gz, the index build, `evaluate` and one-shot queries at each size. Index builds at 1,000,000 clips take
minutes, so the largest size is built once and its ingest measured 3 times; smaller sizes are built 3 times.
The whole script takes about half an hour on 2 cores without the peers, about an hour with them.
"""

import argparse
import json
import shutil
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

from cargo_target import target_dir

ROOT = Path(__file__).resolve().parent.parent
# --help shows the docstring without its usage paragraph (argparse writes its own).
DESCRIPTION = "\n\n".join(part for i, part in enumerate(__doc__.split("\n\n")) if i != 1)
BIN = target_dir() / "release" / "soundalike"


def summary_mb(stderr):
    """The records' size from ingest's summary ("22160 records (33.6 MB)"; bytes or KB for small inputs)."""
    value, unit = re.search(r"records? \(([\d.]+) (bytes?|KB|MB)\)", stderr).groups()
    return float(value) * {"byte": 1e-6, "bytes": 1e-6, "KB": 1e-3, "MB": 1}[unit]


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
    parser = argparse.ArgumentParser(description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--peers-python", default=str(ROOT.parent / "peers-venv" / "bin" / "python"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "audioset" / "real"))
    parser.add_argument("--scale", default="100000,300000,1000000",
                        help="synthetic set sizes for the scale runs, comma-separated ('' for none)")
    parser.add_argument("--scale-data", default=str(ROOT.parent / "bench-data"),
                        help="where the synthetic sets are generated (once; they are deterministic) and kept")
    parser.add_argument("--scale-peers", default="100000,1000000",
                        help="the synthetic set sizes at which Annoy and hnswlib run too, comma-separated")
    parser.add_argument("--held-out", default="100000,300000,1000000",
                        help="sizes at which 1,000 clips not in the index are asked by their embeddings, beside "
                             "hnswlib, Voyager, usearch and Annoy (scripts/peers/held_out.py); '' for none")
    parser.add_argument("--peers-reuse", default="1000000",
                        help="sizes at which the peers' figures saved by an earlier run for the same queries are reused")
    parser.add_argument("--output", default=str(OUTPUT),
                        help="the file whose marked sections are written (default docs/bench-generated.md); lines "
                             "outside the markers and sections this run does not measure are kept")
    args = parser.parse_args()
    global SCALE_PEERS, PEERS_REUSE
    SCALE_PEERS = {int(n) for n in args.scale_peers.split(",") if n}
    PEERS_REUSE = {int(n) for n in args.peers_reuse.split(",") if n}

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

    setup = [
        "## The run's set-up",
        "",
        "Medians of several runs, each a whole process, measured side by side in one run of `scripts/bench.py`.",
        "",
        f"- Machine: {machine()}",
        f"- soundalike {subprocess.run([BIN, '--version'], capture_output=True, text=True).stdout.strip()}",
    ]
    if notebook:
        setup.append(f"- TensorFlow {tf_version} (tensorflow-cpu from PyPI), Python {platform.python_version()}")
    setup += [
        f"- Data: the real bal_train split and the eval files in `{shown_path(data)}`: {input_mb:.1f} MB of TFRecords",
        f"- Runs: {args.runs} (TensorFlow: {max(3, args.runs // 2)})",
    ]
    lines = [
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
    sections = {"setup": setup, "ingest": lines}
    sections["recommend"] = recommend_section(bal_train, work, args.runs, peers_python if notebook else None)
    sizes = [int(n) for n in args.scale.split(",") if n]
    if sizes:
        sections["scale"] = scale_section(bal_train, evaluation, Path(args.scale_data), work, sizes, args.runs,
                                          peers_python if peers_python.exists() else None)
    held = [int(n) for n in args.held_out.split(",") if n]
    if held:
        sections["held-out"] = held_out_section(bal_train, evaluation, Path(args.scale_data), work, held,
                                                peers_python if peers_python.exists() else None)
    stamp = run_stamp()
    output = Path(args.output)
    write_sections(output, {name: [stamp, ""] + body for name, body in sections.items()})
    print(f"wrote the sections {', '.join(sections)} of {output}", file=sys.stderr)


# The file bench.py writes, and the markers of the sections it owns in it. Everything else in the file is kept.
OUTPUT = ROOT / "docs" / "bench-generated.md"
BEGIN = "<!-- bench.py: begin {} -->"
END = "<!-- bench.py: end {} -->"
NEW_FILE = """# Generated benchmark tables

Written by `python3 scripts/bench.py`: each section between its `<!-- bench.py: begin NAME -->` and
`<!-- bench.py: end NAME -->` lines is replaced by the next run that measures it; every other line is kept.
The current figures, with their commit and conditions, are in [BENCHMARKS.md](../BENCHMARKS.md); the dated
history in [bench-log.md](bench-log.md).
"""


def marker_line(text, marker):
    """The offset of the line that is exactly `marker`, or -1; a marker written twice is an error."""
    found = [m.start() for m in re.finditer(r"^" + re.escape(marker) + r"[ \t]*$", text, re.M)]
    if len(found) > 1:
        raise ValueError(f"{marker} appears {len(found)} times")
    return found[0] if found else -1


def replace_section(text, name, body):
    """text with the lines between NAME's begin and end markers replaced by body (a string), the markers kept;
    if the file has no such section, text with the section added at the end. Nothing outside it changes."""
    begin, end = BEGIN.format(name), END.format(name)
    if "<!-- bench.py: " in body:
        raise ValueError(f"the body of section {name} holds a marker")
    block = f"{begin}\n{body.strip(chr(10))}\n{end}"
    start, stop = marker_line(text, begin), marker_line(text, end)
    if start < 0 and stop < 0:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    if start < 0 or stop < start:
        raise ValueError(f"section {name}: its begin and end markers are missing or out of order")
    return text[:start] + block + text[stop + len(end):]


def write_sections(path, sections):
    """Replaces (or adds) each named section of path, whose lines are given, and keeps the rest of the file;
    written to a temporary file and renamed over, so a failed run leaves the file as it was."""
    path = Path(path)
    text = path.read_text() if path.exists() else NEW_FILE
    for name, body in sections.items():
        text = replace_section(text, name, "\n".join(body))
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def run_stamp():
    """The run's commit and date, the first line of each section it writes."""
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return f"Run of {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, commit {commit}."


def shown_path(path):
    """path as the reader should see it: relative to the repository's parent where it is under it (the shared
    data is `../shared/audioset`), never the measuring machine's absolute path."""
    try:
        return "../" + str(Path(path).resolve().relative_to(ROOT.parent))
    except ValueError:
        return Path(path).name


def one_core(cmd):
    """The command pinned to one core (the last: keep other work such as builds on the first while measuring),
    when taskset is there."""
    last = max(os.sched_getaffinity(0))
    return (["taskset", "-c", str(last)] if shutil.which("taskset") else []) + list(map(str, cmd))


def answers(path):
    return [json.loads(line) for line in open(path)]


def recall(approx, exact):
    hits = sum(len({r["video_id"] for r in a["results"]} & {r["video_id"] for r in e["results"]})
               for a, e in zip(approx, exact))
    return hits / max(1, sum(len(e["results"]) for e in exact))


def label_precision(answers_, labels, music):
    hits = sum(sum(1 for r in a["results"] if set(r["labels"]) & labels[a["query"]] & music) for a in answers_)
    return hits / (10 * len(answers_))


def recommend_section(bal_train, work, runs, peers_python):
    """index and recommend on bal_train, side by side with Annoy and hnswlib on the same vectors."""
    clips = work / "clips.jsonl"
    subprocess.run([BIN, "ingest", "-q", bal_train, "-o", clips], check=True)
    music = {int(line) for line in open(ROOT / "src/data/music_label_indices.txt")} - {137}
    labels = {}
    for line in open(clips):
        clip = json.loads(line)
        labels[clip["video_id"]] = set(clip["labels"])
    queries = [v for v, l in labels.items() if l & music]
    (work / "queries.txt").write_text("\n".join(queries) + "\n")
    index = work / "index"
    build_wall, build_rss, _ = measure([BIN, "index", "-q", *SAME_VECTORS, "--index", index, clips], runs)
    size_mb = sum(p.stat().st_size for p in index.iterdir()) / 1e6

    configs = [("default (exact scan at this size)", []), ("graph, ef 16", ["--ef", "16"]),
               ("graph, ef 32", ["--ef", "32"]), ("trees, search_k 2000", ["--search-k", "2000"]),
               ("--exact", ["--exact"])]
    # Runs interleave the configurations, so that a noisy moment on the machine falls on all of them alike.
    walls = {name: [] for name, _ in configs}
    got = {}
    for _ in range(runs):
        for n, (name, extra) in enumerate(configs):
            out = work / f"answers-{n}.jsonl"
            cmd = one_core([BIN, "recommend", *SAME_WORK, "--index", index, "--batch", work / "queries.txt", "--json", *extra])
            started = time.perf_counter()
            with open(out, "w") as f:
                subprocess.run(cmd, stdout=f, check=True)
            walls[name].append(time.perf_counter() - started)
            got[name] = answers(out)
    exact = got["--exact"]
    rows = [(f"soundalike recommend --batch, {name}", recall(got[name], exact), label_precision(got[name], labels, music),
             len(queries) / statistics.median(walls[name])) for name, _ in configs]
    one_shot = []
    for q in queries[:: max(1, len(queries) // 30)][:30]:
        started = time.perf_counter()
        subprocess.run([BIN, "recommend", *SAME_WORK, "--index", index, f"--id={q}", "--json"], check=True, stdout=subprocess.DEVNULL)
        one_shot.append(time.perf_counter() - started)

    lines = [
        "",
        "## index and recommend (real bal_train music clips)",
        "",
        f"{len(labels)} music clips, default settings but `--projection none` and `--rerank 0`, the peers' work (mean of de-quantized frames, 128-d, angular, seed 42);",
        f"{len(queries)} queries: every clip with a music label other than 137, each asking for its 10 neighbours",
        "(itself excluded). Batches run on one core (`taskset`, the last core) as whole processes, index opening and JSON",
        "output included; the peers' figures are their query loops alone, in Python, also on one core.",
        "",
        f"- index build: {build_wall:.2f} s, peak RSS {build_rss:.0f} MB, {size_mb:.1f} MB on disk",
        f"- one `recommend --id` as a whole process: median {statistics.median(one_shot) * 1000:.1f} ms over "
        f"{len(one_shot)} clips (target 6 ms; the notebook's Python + Annoy one-shot query: about 12 ms)",
        "",
        "| search | recall@10 vs exact | label precision@10 | queries/s (one core) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, r, p, qps in rows:
        lines.append(f"| {name} | {r:.4f} | {p:.4f} | {qps:.0f} |")
    best_ours = rows[0][3]
    if peers_python:
        out = subprocess.run(one_core([peers_python, ROOT / "scripts/peers/ann_peers.py", clips, work / "queries.txt",
                                       ROOT / "src/data/music_label_indices.txt"]),
                             check=True, capture_output=True, text=True).stdout
        peers = [json.loads(line) for line in out.splitlines()]
        for peer in peers:
            setting = ", ".join(f"{k} {peer[k]}" for k in ("search_k", "ef") if k in peer)
            recall_text = f"{peer['recall']:.4f}" if "recall" in peer else "n/a"
            lines.append(f"| {peer['peer']}{', ' + setting if setting else ''} | {recall_text} | "
                         f"{peer['label_precision']:.4f} | {peer['qps']} |")
        matched = [p for p in peers if p.get("recall", 0) >= 0.95 and p["peer"].startswith("annoy")]
        if matched:
            annoy = max(matched, key=lambda p: p["qps"])
            lines += ["", f"At recall@10 >= 0.95 Annoy's fastest setting answers {annoy['qps']} queries/s "
                          f"(search_k {annoy['search_k']}, recall {annoy['recall']}); soundalike's default answers "
                          f"{best_ours:.0f} ({best_ours / annoy['qps']:.2f}x) at recall 1.0, process start included."]
    return lines


# Sizes at which Annoy and hnswlib run beside us (--scale-peers), and at which their saved figures are reused
# (--peers-reuse).
SCALE_PEERS = {100000, 1000000}
PEERS_REUSE = {1000000}
# The size at which a two-thread build is measured too.
THREADS_SIZE = 300000
# Queries per synthetic set, as issue 9 measures.
QUERIES = 2000
# The graph walk's breadths and the forest's budgets measured beside the default.
EF_SWEEP = (10, 12, 16, 24, 32, 48, 64)
SEARCH_K = (2000, 8000)
# Noise per byte of the spread-out synthetic clips, calibrated against the real clips (scripts/synth_check.md).
MIX_NOISE = 16


def eval_sources(evaluation, data_dir):
    """The eval split to mix from: the whole split where ../bench-data has it (scripts/synth_check.md), else
    the files in --data."""
    whole = data_dir / "audioset-eval" / "audioset_v1_embeddings" / "eval"
    return whole if whole.is_dir() else evaluation


def synthetic(sources, data_dir, size):
    """The spread-out synthetic features.tar.gz of `size` music clips, generated once."""
    tarball = data_dir / f"synth-mix-{size}" / "features.tar.gz"
    if not tarball.exists():
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--example", "synth"], cwd=ROOT,
                       check=True)
        subprocess.run([BIN.parent / "examples" / "synth", *sources, tarball.parent, str(size),
                        "--music-only", "--tar", "--mix", "2", "--noise", str(MIX_NOISE)], check=True)
    return tarball


def evaluate(index, extra=()):
    out = subprocess.run(one_core([BIN, "evaluate", "-q", *SAME_WORK, "--index", index, "--json", *extra]),
                         check=True, capture_output=True, text=True).stdout
    reports = json.loads(out)
    return reports if isinstance(reports, list) else [reports]


def one_shot_ms(index, queries, n=21):
    """Median wall time of `recommend --id` as a whole process, over n queries."""
    walls = []
    for q in queries[:n]:
        started = time.perf_counter()
        subprocess.run([BIN, "recommend", *SAME_WORK, "--index", index, f"--id={q}", "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) * 1000


def setting_name(report):
    if report["search"] == "exact":
        return "exact scan"
    if report["search"] == "trees":
        return f"trees, search_k {report['search_k']}"
    return f"graph, ef {report['ef']}"


def batch_runs(index, queries_file, count, settings, runs, work):
    """Queries/s and recall@10 of `recommend --batch --json` as a whole process on one core, per setting (extra
    arguments): queries/s the median of `runs`, the settings interleaved so that a noisy moment falls on all
    alike; recall of the answers against `--exact` on the same queries."""
    exact = work / "exact-answers.jsonl"
    with open(exact, "w") as f:
        subprocess.run([BIN, "recommend", *SAME_WORK, "--index", index, "--batch", queries_file, "--json", "--exact"],
                       check=True, stdout=f)
    truth = answers(exact)
    walls = {name: [] for name, _ in settings}
    got = {}
    for _ in range(runs):
        for n, (name, extra) in enumerate(settings):
            out = work / f"batch-{n}.jsonl"
            started = time.perf_counter()
            with open(out, "w") as f:
                subprocess.run(one_core([BIN, "recommend", *SAME_WORK, "--index", index, "--batch", queries_file, "--json",
                                         *extra]), check=True, stdout=f)
            walls[name].append(time.perf_counter() - started)
            got[name] = out
    return {name: (recall(answers(got[name]), truth), count / statistics.median(w)) for name, w in walls.items()}


def peers(peers_python, clips, queries_file, data_dir, size):
    """Annoy's and hnswlib's figures on the same clips and queries: from ann_peers.py, or, at the sizes in
    --peers-reuse, from its saved output when it was made for the very same queries (a 1,000,000-clip hnswlib
    build takes about 15 minutes)."""
    cache = data_dir / f"peers-{size}.jsonl"
    cached_queries = data_dir / f"synth-mix-{size}-queries.txt"
    if (size in PEERS_REUSE and cache.exists() and cached_queries.exists()
            and cached_queries.read_text() == queries_file.read_text()):
        return [json.loads(line) for line in cache.read_text().splitlines()], f"saved by an earlier run ({cache.name})"
    out = subprocess.run(one_core([peers_python, ROOT / "scripts/peers/ann_peers.py", clips, queries_file,
                                   ROOT / "src/data/music_label_indices.txt", "--no-notebook",
                                   "--save-hnsw", data_dir / f"hnsw-{size}"]),
                         check=True, capture_output=True, text=True).stdout
    cache.write_text(out)
    if not cached_queries.exists():
        shutil.copyfile(queries_file, cached_queries)
    return [json.loads(line) for line in out.splitlines()], "measured in this run"


# What the peers do, and so what every timing and recall figure here measures: Annoy and hnswlib index VGGish's
# 128-d mean vectors and answer by them alone, so our indexes are built without the learned projection and
# queried without the frame-level re-rank (issue 13). Their cost and their gain in label precision are measured
# apart (scripts/projection_bench.sh; BENCHMARKS.md, "Label precision").
SAME_VECTORS = ["--projection", "none"]
SAME_WORK = ["--rerank", "0"]


# The settings timed in rounds side by side: around where both sides first reach recall 0.95.
SIDE_EF = (10, 12, 16)
SIDE_PEER_EF = (10, 12, 14, 16, 20)


def side_by_side(index, queries_file, count, peers_python, saved, runs, work):
    """Queries/s of our whole-process batches and of hnswlib's query loop (its index saved by ann_peers.py),
    timed in alternating rounds on the same core: a machine that is busier in one minute than the next then
    slows both sides alike, where timing one side after the other would put the noise into the ratio.
    Returns ({our setting: median q/s}, {hnswlib ef: median q/s}, rounds)."""
    if not (saved / "hnsw.bin").exists():
        return None
    ours = {ef: [] for ef in SIDE_EF}
    theirs = {ef: [] for ef in SIDE_PEER_EF}
    rounds = max(runs, 5)
    for _ in range(rounds):
        for ef in SIDE_EF:
            started = time.perf_counter()
            with open(work / "side.jsonl", "w") as f:
                subprocess.run(one_core([BIN, "recommend", *SAME_WORK, "--index", index, "--batch", queries_file, "--json",
                                         "--ef", str(ef)]), check=True, stdout=f)
            ours[ef].append(count / (time.perf_counter() - started))
        out = subprocess.run(one_core([peers_python, ROOT / "scripts/peers/hnsw_time.py", saved, "--ef",
                                       ",".join(map(str, SIDE_PEER_EF))]),
                             check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            row = json.loads(line)
            theirs[row["ef"]].append(row["qps"])
    median = lambda d: {k: statistics.median(v) for k, v in d.items()}
    return median(ours), median(theirs), rounds


def side_by_side_lines(size, side, batch_rows, found, target=0.95):
    """The interleaved rounds as a table, and the matched-recall ratio they give."""
    ours, theirs, rounds = side
    recall_of = {name: r for name, r, _ in batch_rows}
    peer_recall = {p["ef"]: p["recall"] for p in found if p["peer"].startswith("hnswlib")}
    lines = ["", f"Side by side at {size:,} clips: {rounds} rounds, each running soundalike's batches (whole processes) "
                 "and then hnswlib's query loop (its saved index) on the same core, one after the other; medians "
                 "of the rounds:", "",
             "| engine | setting | recall@10 | queries/s |", "| --- | --- | ---: | ---: |"]
    for ef, qps in ours.items():
        lines.append(f"| soundalike, whole process | graph, ef {ef} | {recall_of[f'graph, ef {ef}']:.4f} | {qps:.0f} |")
    for ef, qps in theirs.items():
        lines.append(f"| hnswlib, M 16, query loop | ef {ef} | {peer_recall.get(ef, 'n/a')} | {qps:.0f} |")
    mine = [(ef, q) for ef, q in ours.items() if recall_of[f"graph, ef {ef}"] >= target]
    peer = [(ef, q) for ef, q in theirs.items() if peer_recall.get(ef, 0) >= target]
    if mine and peer:
        (a, qa), (b, qb) = max(mine, key=lambda x: x[1]), max(peer, key=lambda x: x[1])
        lines += ["", f"At recall@10 >= {target}, side by side: soundalike ef {a} {qa:.0f} queries/s against hnswlib "
                      f"ef {b} {qb:.0f}: **{qa / qb:.2f}x**."]
    else:
        lines += ["", f"Side by side, a setting of one side did not reach recall {target} among those timed."]
    return lines


# Clips held out of each held-out set's index and asked by their embeddings.
HELD_OUT = 1000


def one_shot_embedding_ms(index, clip_line, n=21):
    """Median wall time of `recommend --embedding FILE` as a whole process, asked n times."""
    path = Path(index).parent / "one-query.json"
    path.write_text(clip_line)
    walls = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([BIN, "recommend", "--index", index, "--embedding", path, "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) * 1000


def held_out_section(bal_train, evaluation, data_dir, work, sizes, peers_python):
    """A new song's query: at each size, the set's last 1,000 clips are left out of the index and asked by their
    embeddings, by soundalike (with `--projection none --rerank 0`, the peers' vectors, and with the defaults) and
    by the peers on the same vectors (scripts/peers/held_out.py); and a one-shot `recommend --embedding`."""
    lines = ["", "## A new song's query: clips not in the index, asked by their embeddings", "",
             "Each set is the scale runs' generator with 1,000 more clips, left out of the index and asked by their",
             "embeddings (every upload and new song is such a query). Queries by clip id are in the tables above;",
             "these are held out. One query at a time on one thread; the peers by their C++ batch call on one thread",
             "and by a Python loop; medians of 3 interleaved rounds (scripts/peers/held_out.py)."]
    sources = [bal_train, eval_sources(evaluation, data_dir)]
    for size in sizes:
        tarball = synthetic(sources, data_dir, size + HELD_OUT)
        every = work / f"held-{size}-all.jsonl"
        subprocess.run([BIN, "ingest", "-q", "-o", every, tarball], check=True)
        clips, held = work / f"held-{size}.jsonl", work / f"held-{size}-queries.jsonl"
        with open(every) as f, open(clips, "w") as c, open(held, "w") as h:
            for number, line in enumerate(f):
                (c if number < size else h).write(line)
        every.unlink()
        none, default = work / f"held-{size}-none.idx", work / f"held-{size}-default.idx"
        build_none, rss_none, _ = measure([BIN, "index", "-q", "--projection", "none", "--index", none, clips], 1)
        build_default, rss_default, _ = measure([BIN, "index", "-q", "--index", default, clips], 1)
        first = open(held).readline()
        lines += ["", f"### {size:,} clips, held out", "",
                  f"Builds: `--projection none` {build_none:.0f} s, peak RSS {rss_none:.0f} MB; defaults "
                  f"{build_default:.0f} s, peak RSS {rss_default:.0f} MB. One-shot `recommend --embedding` (a whole "
                  f"process, median of 21): {one_shot_embedding_ms(default, first):.1f} ms with the defaults, "
                  f"{one_shot_embedding_ms(none, first):.1f} ms with `--projection none`.", ""]
        if peers_python is None:
            lines.append("(The peers' Python is missing: soundalike alone.)")
            peers = ["--peers", ""]
        else:
            peers = []
        python = peers_python or sys.executable
        table = subprocess.run([python, ROOT / "scripts" / "peers" / "held_out.py", clips, held, "--index", none,
                                "--index-default", default, "--soundalike", BIN, *peers],
                               check=True, capture_output=True, text=True).stdout
        lines += table.strip().splitlines()
        for path in (none, default):
            shutil.rmtree(path)
    return lines


def scale_section(bal_train, evaluation, data_dir, work, sizes, runs, peers_python):
    """ingest, index, evaluate, batches and one-shot queries on spread-out synthetic sets of growing size, with
    the peers beside them."""
    rows, evals, batches, peer_rows = [], [], [], []
    threads_note = ""
    sources = [bal_train, eval_sources(evaluation, data_dir)]
    for size in sizes:
        tarball = synthetic(sources, data_dir, size)
        tar_mb = tarball.stat().st_size / 1e6
        clips = work / f"synth-{size}.jsonl"
        big = size >= 1000000
        wall, rss, err = measure([BIN, "ingest", "-o", clips, tarball], 3 if big else runs)
        records_mb = summary_mb(err)
        index = work / f"synth-{size}.idx"
        build_wall, build_rss, _ = measure([BIN, "index", "-q", *SAME_VECTORS, "--index", index, clips], 1 if big else min(runs, 3))
        size_mb = sum(p.stat().st_size for p in index.iterdir()) / 1e6
        if size == THREADS_SIZE:
            threads_wall, _, _ = measure([BIN, "index", "-q", *SAME_VECTORS, "--threads", "2", "--index", work / "threads.idx",
                                          clips], 1)
            shutil.rmtree(work / "threads.idx")
            threads_note = (f"Building with `--threads 2` (the forest on two threads; the graph always uses every "
                            f"core) at {size:,} clips: {threads_wall:.1f} s against {build_wall:.1f} s.")
        # The queries: the peers' saved sample where there is one (so that both sides answer the same 2,000),
        # else evaluate's own seeded sample.
        saved = data_dir / f"synth-mix-{size}-queries.txt"
        queries_file = work / f"synth-{size}-queries.txt"
        extra = ["--queries", str(QUERIES)]
        if not saved.exists():
            extra += ["--save-queries", queries_file]
        for ef in EF_SWEEP:
            extra += ["--ef", str(ef)]
        for k in SEARCH_K:
            extra += ["--search-k", str(k)]
        reports = evaluate(index, extra)
        if saved.exists():
            shutil.copyfile(saved, queries_file)
        queries = queries_file.read_text().split()
        shot = one_shot_ms(index, queries)
        settings = [("default", [])] + [(f"graph, ef {ef}", ["--ef", str(ef)]) for ef in EF_SWEEP]
        measured = batch_runs(index, queries_file, len(queries), settings, runs, work)
        default = reports[0]
        batch_rows = [("default: " + setting_name(default), *measured["default"])]
        batch_rows += [(name, *measured[name]) for name, _ in settings[1:]]
        qps = {name: m[1] for name, m in measured.items()}
        rows.append((size, wall, tar_mb / wall, records_mb / wall, size / wall, rss, build_wall, build_rss, size_mb,
                     default, shot, qps["default"]))
        evals.append((size, reports))
        batches.append((size, batch_rows))
        if peers_python and size in SCALE_PEERS:
            found, source = peers(peers_python, clips, queries_file, data_dir, size)
            side = side_by_side(index, queries_file, len(queries), peers_python, data_dir / f"hnsw-{size}", runs,
                                work)
            peer_rows.append((size, found, source, batch_rows, side))
        clips.unlink()
        shutil.rmtree(index)

    lines = [
        "",
        "## Scale: spread-out synthetic music clips, 100,000 to 1,000,000",
        "",
        "Synthetic sets from `examples/synth.rs --mix 2`: each clip takes the labels of two random real music clips",
        f"of bal_train and eval and draws each of its 10 frames from a random frame of either, plus noise of up to",
        f"{MIX_NOISE} per byte; fresh video_ids, the release's layout, read from a features.tar.gz. Their neighbours",
        "are as far apart as the real clips' (checked at the real data's size: scripts/synth_check.md), so no search",
        "looks better here than it would on AudioSet. ingest: median of 3 runs at 1,000,000 clips, of --runs below;",
        "index: one build at 1,000,000, median of 3 below. `evaluate` (2,000 seeded queries by id, one thread, index",
        "open) gives recall against the exact scan and latency; one-shot is `recommend --id` as a whole process",
        "(median of 21); batch is `recommend --batch --json` of the same 2,000 queries as a whole process on one core",
        "(index opening, clip metadata and JSON output included).",
        "",
        "| clips | ingest s | MB/s (tar.gz / records) | clips/s | ingest peak RSS MB | index build s | build peak RSS MB"
        " | index MB | default search | recall@10 | p50 / p95 / p99 ms | one-shot ms | batch q/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for (size, wall, tar_mbs, rec_mbs, clips_s, rss, build, build_rss, size_mb, default, shot, batch) in rows:
        lat = default["latency_ms"]
        lines.append(f"| {size:,} | {wall:.1f} | {tar_mbs:.0f} / {rec_mbs:.0f} | {clips_s:,.0f} | {rss:.0f} | "
                     f"{build:.1f} | {build_rss:.0f} | {size_mb:.0f} | {setting_name(default)} | "
                     f"{default['recall']:.4f} | {lat['p50']:.3f} / {lat['p95']:.3f} / {lat['p99']:.3f} | "
                     f"{shot:.1f} | {batch:.0f} |")
    lines += ["", "Targets (issue 9): recall@10 of the default search >= 0.95 at every size; at 1,000,000 clips a "
                  "one-shot `recommend --id` within 5 ms, the build within 10 minutes and 4 GB.",
              "", threads_note,
              "", "`evaluate` at each size (in-process, one thread):", "",
              "| clips | search | recall@10 | label precision@10 | p50 ms | p99 ms | queries/s |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for size, reports in evals:
        for r in reports:
            name = setting_name(r) + (" (default)" if r["default"] else "")
            lines.append(f"| {size:,} | {name} | {r['recall']:.4f} | {r['label_precision']:.4f} | "
                         f"{r['latency_ms']['p50']:.3f} | {r['latency_ms']['p99']:.3f} | {r['qps']:.0f} |")
    lines += ["", "`recommend --batch --json` as a whole process on one core, on the queries the peers answer (recall",
              "against `recommend --batch --exact` on the same queries):",
              "", "| clips | search | recall@10 | queries/s |", "| ---: | --- | ---: | ---: |"]
    for size, batch_rows in batches:
        for name, recall_, qps_ in batch_rows:
            lines.append(f"| {size:,} | {name} | {recall_:.4f} | {qps_:.0f} |")
    for size, found, source, batch_rows, side in peer_rows:
        lines += ["", f"Peers on the same {size:,} clips and the same {QUERIES:,} queries (mean vectors, 128-d, cosine;"
                      f" query loops in Python on one core; {source}):", "",
                  "| peer | setting | recall@10 | queries/s | build s (threads) |", "| --- | --- | ---: | ---: | ---: |"]
        for p in found:
            setting = ", ".join(f"{k} {p[k]}" for k in ("search_k", "ef") if k in p)
            lines.append(f"| {p['peer']} | {setting} | {p.get('recall', 'n/a')} | {p['qps']} | "
                         f"{p.get('build_s', '')} ({p.get('build_threads', 1)}) |")
        lines += ["", matched_summary(size, batch_rows, found)]
        if side:
            lines += side_by_side_lines(size, side, batch_rows, found)
    return lines


def matched_summary(size, batch_rows, peers_, target=0.95):
    """Queries/s at recall@10 >= target: our fastest whole-process batch against each peer's fastest, as ratios."""
    ours = [r for r in batch_rows if r[1] >= target]
    if not ours:
        return f"At {size:,} clips no soundalike setting reached recall {target}."
    name, recall_, qps_ = max(ours, key=lambda r: r[2])
    text = (f"At {size:,} clips and recall@10 >= {target}, soundalike's fastest setting ({name}) answers "
            f"{qps_:.0f} queries/s as a whole process (recall {recall_:.4f})")
    for peer_name in ("annoy", "hnswlib"):
        ok = [p for p in peers_ if p["peer"].startswith(peer_name) and p.get("recall", 0) >= target]
        if ok:
            best = max(ok, key=lambda p: p["qps"])
            setting = f"ef {best['ef']}" if "ef" in best else f"search_k {best['search_k']}"
            text += (f"; {peer_name}'s fastest, {setting}: {best['qps']} (recall {best['recall']}): "
                     f"**{qps_ / best['qps']:.2f}x**")
        else:
            text += f"; {peer_name}: no setting reached {target}"
    return text + "."


if __name__ == "__main__":
    main()
