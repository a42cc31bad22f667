#!/usr/bin/env python3
"""A catalogue on Ray, end to end: a folder of audio embedded by Ray Data workers, the clips written to
Parquet, an index built (one, and one sharded by Ray tasks), every track's recommendations written to Parquet,
and the index's vectors exported to Milvus Lite and asked there.

    pip install "./python[ray,milvus]"
    python examples/ray_catalogue.py SONGS_DIR OUT_DIR [--weights W --pca P] [--workers 2] [--shards 4]
    python examples/ray_catalogue.py --demo 24 OUT_DIR --weights W --pca P     # generated songs

On a cluster, run it on the head node with --address auto and SONGS_DIR and OUT_DIR on a file system every
node sees (docs/scale.md). Prints one line per step with its time on stderr, and at the end writes a JSON
summary to OUT_DIR/summary.json and prints it. Ray itself may print its own lines on stdout (its raylet's
warnings), so a script reads the file rather than parsing stdout.
"""

import argparse
import json
import sys
import time
from pathlib import Path


def generate_songs(folder, count, rate=16_000):
    """`count` short generated songs (tones and noise, 10.5 to 13.5 s: an index takes 10 rows of 0.96 s), for a
    run without a catalogue at hand."""
    import wave

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        t = np.arange(int((10.5 + i % 4) * rate)) / rate
        song = 0.3 * np.sin(2 * np.pi * (98 + 29 * i) * t) * (1 + 0.4 * np.sin(2 * np.pi * (1 + i % 3) * t))
        song += 0.05 * rng.standard_normal(t.size)
        with wave.open(str(folder / f"song{i:03d}.wav"), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes((np.clip(song, -1, 1) * 32767).astype("<i2").tobytes())
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("songs", nargs="?", help="a folder of audio files (WAV, FLAC, MP3, Ogg Vorbis)")
    parser.add_argument("out", help="where the Parquet files, the indexes and Milvus Lite's file go")
    parser.add_argument("--demo", type=int, metavar="N", help="generate N songs instead of reading a folder")
    parser.add_argument("--weights", help="VGGish's weights (default: as `soundalike embed` finds them)")
    parser.add_argument("--pca", help="VGGish's PCA parameters")
    parser.add_argument("--workers", type=int, default=2, help="embedding actors (default 2)")
    parser.add_argument("--shards", type=int, default=4, help="shards of the sharded index (default 4)")
    parser.add_argument("--k", type=int, default=10, help="recommendations per track (default 10)")
    parser.add_argument("--address", help="a Ray cluster's address (default: a local cluster)")
    parser.add_argument("--num-cpus", type=int, help="logical CPUs of the local cluster (default: workers + 2)")
    args = parser.parse_args(argv)
    if (args.songs is None) == (args.demo is None):
        parser.error("give a folder of songs or --demo N")

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import ray

    import soundalike
    import soundalike.arrow as sa
    import soundalike.ray as sr
    from soundalike.shards import ShardedIndex, build_shards

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    songs = generate_songs(out / "songs", args.demo) if args.demo else Path(args.songs)
    summary, started = {}, time.perf_counter()

    def step(name, **figures):
        seconds = time.perf_counter() - started
        summary[name] = dict(figures, seconds=round(seconds, 2))
        print(f"{seconds:8.1f} s  {name}: {json.dumps(figures)}", file=sys.stderr)

    if args.address:
        ray.init(address=args.address)
    else:
        # More logical CPUs than actors, so that the read tasks are never starved (docs/scale.md).
        ray.init(num_cpus=args.num_cpus or args.workers + 2, include_dashboard=False)
    step("ray started", cpus=ray.cluster_resources().get("CPU"))

    # 1. Embedding: each actor loads the weights once and embeds batches of files; a bad file is a row.
    files = ray.data.read_binary_files(str(songs), include_paths=True)
    clips = files.map_batches(
        sr.EmbedBatch,
        fn_constructor_kwargs={"weights": args.weights, "pca": args.pca},
        compute=ray.data.ActorPoolStrategy(size=args.workers),
        batch_size=4,
        batch_format="pyarrow",
        # One compute thread per actor, an actor per core: VGGish in one process already uses every core.
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}},
    )
    table = pa.concat_tables(ray.get(clips.to_arrow_refs()))
    failed = table.filter(pc.is_valid(table.column("error")))
    table = table.filter(pc.is_null(table.column("error"))).drop_columns(["error"])
    sa.write_parquet(table, out / "clips.parquet")
    step("embedded", tracks=table.num_rows, failed=failed.num_rows, parquet_bytes=(out / "clips.parquet").stat().st_size)
    for row in failed.select(["video_id", "error"]).to_pylist():
        print(f"warning: {row['error']}", file=sys.stderr)

    # 2. One index, and a sharded one built by Ray tasks.
    index_path = out / "catalogue.idx"
    if not index_path.exists():
        soundalike.build_index(index_path, out / "clips.parquet")
    step("indexed", clips=len(soundalike.Index(index_path)))
    shards_dir = out / "catalogue.shards"
    if not (shards_dir / "shards.json").exists():
        build_shards(out / "clips.parquet", shards_dir, shards=args.shards, ray=True)
    step("sharded", shards=len(ShardedIndex(shards_dir).shards))

    # 3. Every track's recommendations, asked by the workers (each opens the index once).
    k = min(args.k, max(1, table.num_rows - 1))
    answers = ray.data.from_arrow(table.select(["video_id"])).repartition(args.workers * 2).map_batches(
        sr.RecommendBatch, fn_constructor_args=(str(index_path),), fn_constructor_kwargs={"k": k},
        compute=ray.data.ActorPoolStrategy(size=args.workers), batch_format="pyarrow",
    )
    recommendations = pa.concat_tables(ray.get(answers.to_arrow_refs()))
    pq.write_table(recommendations, out / "recommendations.parquet")
    step("recommended", tracks=recommendations.num_rows, k=k)

    # 4. The vectors the index searches, into Milvus Lite (the client code a Milvus cluster takes).
    exported = sa.export(index_path, out / "vectors.parquet", vector="list")
    try:
        from pymilvus import DataType, MilvusClient
    except ImportError:
        step("milvus skipped", reason="pip install \"./python[milvus]\"")
    else:
        client = MilvusClient(str(out / "milvus.db"))
        if client.has_collection("tracks"):
            client.drop_collection("tracks")
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("video_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=exported["dimensions"])
        params = client.prepare_index_params()
        params.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
        client.create_collection("tracks", schema=schema, index_params=params)
        vectors = pq.read_table(exported["path"])
        for batch in vectors.to_batches(max_chunksize=1000):
            client.insert("tracks", batch.select(["id", "video_id", "vector"]).to_pylist())
        first = vectors.slice(0, 1).to_pylist()[0]
        found = client.search("tracks", data=[first["vector"]], limit=k + 1, output_fields=["video_id"])
        theirs = [hit["entity"]["video_id"] for hit in found[0] if hit["entity"]["video_id"] != first["video_id"]][:k]
        ours = soundalike.Index(index_path).recommend(
            id=first["video_id"], k=k, search=soundalike.Search(exact=True, rerank=0))
        agree = len(set(theirs) & {hit["video_id"] for hit in ours}) / max(1, k)
        client.close()
        step("milvus", rows=exported["rows"], dimensions=exported["dimensions"], agreement_first_track=agree)
    ray.shutdown()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
