"""The original notebook's ingest path, for side-by-side timing with `soundalike ingest`.

Mirrors ajhalthor/spotify-recommender "AudioSet Processing.ipynb": read the TFRecords with tf.data, parse each
record with tf.train.SequenceExample.ParseFromString, keep clips whose labels include a class whose display name
contains "music", take the first 10 frames, and json.dump the list.

usage: notebook_ingest.py CLASS_CSV OUTPUT DIR...
"""

import csv
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402


def main():
    class_csv, output, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(class_csv) as f:
        music = {int(row["index"]) for row in csv.DictReader(f) if "music" in row["display_name"].lower()}
    files = sorted(p for d in dirs for p in glob.glob(os.path.join(d, "*.tfrecord")))
    started = time.perf_counter()
    clips = []
    for raw in tf.data.TFRecordDataset(files):
        example = tf.train.SequenceExample()
        example.ParseFromString(raw.numpy())
        context = example.context.feature
        labels = list(context["labels"].int64_list.value)
        if not music.intersection(labels):
            continue
        frames = example.feature_lists.feature_list["audio_embedding"].feature
        if len(frames) < 10:
            continue
        clips.append({
            "video_id": context["video_id"].bytes_list.value[0].decode(),
            "start_time": context["start_time_seconds"].float_list.value[0],
            "end_time": context["end_time_seconds"].float_list.value[0],
            "labels": labels,
            "embedding": [list(f.bytes_list.value[0]) for f in frames[:10]],
        })
    with open(output, "w") as f:
        json.dump(clips, f)
    # The loop alone, without TensorFlow's import and start-up.
    print(f"clips={len(clips)} loop_seconds={time.perf_counter() - started:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
