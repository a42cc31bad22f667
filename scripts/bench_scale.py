#!/usr/bin/env python3
"""Past one machine, measured on one (BENCHMARKS.md, "Past one machine"): run with the package installed with
its extras (`pip install "./python[ray,milvus]"`).

    python scripts/bench_scale.py embed WORK --weights W --pca P [--files 16] [--seconds 30] [--rounds 3]
    python scripts/bench_scale.py parquet WORK --records ../shared/audioset/real/audioset_v1_embeddings/bal_train
    python scripts/bench_scale.py shards WORK --clips c200k.jsonl --held held.jsonl [--shards 4]

embed: the same generated songs embedded by `soundalike embed` (one process, all files), by Ray Data with one
actor, with two, and with two of one compute thread each (`EmbedBatch`, `map_batches`), alternated round by
round; prints seconds and audio
seconds per second for each, the medians, and each Ray run's ratio to `embed`.
parquet: bal_train's music clips as JSON Lines (`soundalike ingest`) and as Parquet (soundalike.arrow, zstd):
bytes per clip, write and read times (read: to clip dicts with numpy embeddings), and `build_index` from each.
shards: CLIPS (JSON Lines) as a Parquet table; one index built with two threads against four shards built as
Ray tasks (two at a time, one thread each); the held-out clips asked of both (exact and default searches):
queries/s and recall@10 against the one index's exact scan.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from cargo_target import target_dir  # noqa: E402


def binary():
    return os.environ.get("SOUNDALIKE_BIN") or str(target_dir() / "release" / "soundalike")


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def songs(folder, files, seconds, rate=44_100):
    """Generated stereo songs at 44.1 kHz (resampled as a real song is), each its own tones and noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(files):
        path = folder / f"song{i:03d}.wav"
        paths.append(path)
        if path.exists():
            continue
        t = np.arange(int(seconds * rate)) / rate
        left = 0.3 * np.sin(2 * np.pi * (110 + 23 * i) * t) + 0.05 * rng.standard_normal(t.size)
        right = 0.3 * np.sin(2 * np.pi * (165 + 31 * i) * t) + 0.05 * rng.standard_normal(t.size)
        frames = (np.clip(np.stack([left, right], axis=1), -1, 1) * 32767).astype("<i2")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(frames.tobytes())
    return paths


def bench_embed(args):
    import pyarrow as pa
    import ray

    import soundalike.ray as sr

    work = Path(args.work)
    paths = songs(work / "songs", args.files, args.seconds)
    audio_seconds = args.files * args.seconds
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    def plain():
        subprocess.run([binary(), "embed", "-q", "--weights", args.weights, "--pca", args.pca, *map(str, paths),
                        "-o", str(work / "embed.jsonl")], check=True, stdin=subprocess.DEVNULL)

    def on_ray(actors, threads=None):
        # threads: each actor's compute threads (RAYON_NUM_THREADS); None: as many as the machine's cores.
        remote = {"runtime_env": {"env_vars": {"RAYON_NUM_THREADS": str(threads)}}} if threads else {}

        def run():
            files = ray.data.read_binary_files(str(work / "songs"), include_paths=True)
            clips = files.map_batches(sr.EmbedBatch, fn_constructor_kwargs={"weights": args.weights, "pca": args.pca},
                                      compute=ray.data.ActorPoolStrategy(size=actors), batch_size=2,
                                      batch_format="pyarrow", **remote)
            table = pa.concat_tables(ray.get(clips.to_arrow_refs()))
            assert table.num_rows == args.files and table.column("error").null_count == args.files
        return run

    runs = {"embed": plain, "ray, 1 actor": on_ray(1), "ray, 2 actors": on_ray(2),
            "ray, 2 actors of one thread": on_ray(2, threads=1)}
    results = {name: [] for name in runs}
    for round_ in range(args.rounds):
        for name, run in runs.items():
            seconds, _ = timed(run)
            results[name].append(seconds)
            print(f"round {round_ + 1} {name}: {seconds:.2f} s, {audio_seconds / seconds:.1f}x real time", flush=True)
    medians = {name: statistics.median(times) for name, times in results.items()}
    for name, median in medians.items():
        print(f"median {name}: {median:.2f} s, {audio_seconds / median:.1f}x real time, "
              f"{medians['embed'] / median:.2f}x embed's rate")
    ray.shutdown()


def read_jsonl_clips(path):
    clips = []
    with open(path) as lines:
        for line in lines:
            clip = json.loads(line)
            clip["embedding"] = np.asarray(clip["embedding"], dtype=np.uint8)
            clips.append(clip)
    return clips


def bench_parquet(args):
    import soundalike
    import soundalike.arrow as sa

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    jsonl, parquet = work / "bal.jsonl", work / "bal.parquet"
    rows = []
    for round_ in range(args.rounds):
        write_jsonl, _ = timed(lambda: subprocess.run(
            [binary(), "ingest", "-q", args.records, "-o", str(jsonl)], check=True, stdin=subprocess.DEVNULL))
        read_records, table = timed(lambda: sa.clips_to_table(soundalike.read_tfrecords(args.records)))
        write_parquet, _ = timed(lambda: sa.write_parquet(table, parquet))
        read_jsonl, clips = timed(lambda: read_jsonl_clips(jsonl))
        read_parquet, back = timed(lambda: list(sa.table_to_clips(sa.read_parquet(parquet))))
        assert len(clips) == len(back) == table.num_rows
        for name, source in (("jsonl", jsonl), ("parquet", parquet)):
            index = work / f"bal-{name}.idx"
            if index.exists():
                import shutil

                shutil.rmtree(index)
            built, _ = timed(lambda: soundalike.build_index(index, source, threads=2))
            rows.append((round_, name, built))
        print(f"round {round_ + 1}: ingest to JSON Lines {write_jsonl:.2f} s; records to a table {read_records:.2f} s, "
              f"to Parquet {write_parquet:.2f} s; read JSON Lines to clips {read_jsonl:.2f} s, Parquet {read_parquet:.2f} s; "
              f"build_index from JSON Lines {rows[-2][2]:.2f} s, from Parquet {rows[-1][2]:.2f} s", flush=True)
    n = table.num_rows
    frames = sum(len(c["embedding"]) for c in back)
    print(f"clips {n}, rows {frames}: JSON Lines {jsonl.stat().st_size / n:.0f} bytes a clip, "
          f"Parquet {parquet.stat().st_size / n:.0f} (raw embedding {128 * frames / n:.0f})")


def bench_shards(args):
    import ray

    import soundalike
    import soundalike.arrow as sa
    from soundalike.shards import ShardedIndex, build_shards

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    parquet = work / "clips.parquet"
    if not parquet.exists():
        seconds, table = timed(lambda: sa.clips_to_table(read_jsonl_clips(args.clips)))
        sa.write_parquet(table, parquet)
        print(f"JSON Lines to Parquet: {seconds:.1f} s for {table.num_rows} clips", flush=True)
    held = read_jsonl_clips(args.held)
    queries = np.stack([c["embedding"] for c in held]).astype(np.float32)
    one_path, shards_path = work / "one.idx", work / "shards"
    if not one_path.exists():
        seconds, _ = timed(lambda: soundalike.build_index(one_path, parquet, threads=2))
        print(f"one index, two threads: {seconds:.1f} s", flush=True)
    if not (shards_path / "shards.json").exists():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        seconds, _ = timed(lambda: build_shards(parquet, shards_path, shards=args.shards, ray=True))
        print(f"{args.shards} shards as Ray tasks, two at a time, one thread each: {seconds:.1f} s "
              f"(partition and Parquet included)", flush=True)
        ray.shutdown()
    one, shards = soundalike.Index(one_path), ShardedIndex(shards_path)
    exact = soundalike.Search(exact=True, rerank=0)
    truth, _ = one.recommend_batch(queries, k=10, search=exact)

    def recall(found):
        return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])

    def overlap(found, other):
        return np.mean([len(set(f) & set(o)) / 10 for f, o in zip(found, other)])

    searches = (("exact", exact), ("exact, re-rank 20", soundalike.Search(exact=True)), ("the defaults", None),
                ("graph, no re-rank", soundalike.Search(rerank=0)))
    for name, search in searches:
        answers = {}
        for label, index in (("one index", one), (f"{args.shards} shards", shards)):
            times = []
            for _ in range(args.rounds):
                seconds, (found, _) = timed(lambda: index.recommend_batch(queries, k=10, search=search))
                times.append(seconds)
            answers[label] = found
            median = statistics.median(times)
            print(f"{name}, {label}: {len(queries) / median:,.0f} queries/s (median of {args.rounds}), "
                  f"recall@10 against the one index's exact scan {recall(found):.4f}, "
                  f"the same as the one index's answer {overlap(found, answers['one index']):.4f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["embed", "parquet", "shards"])
    parser.add_argument("work")
    parser.add_argument("--weights")
    parser.add_argument("--pca")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records")
    parser.add_argument("--clips")
    parser.add_argument("--held")
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    {"embed": bench_embed, "parquet": bench_parquet, "shards": bench_shards}[args.what](args)


if __name__ == "__main__":
    main()
