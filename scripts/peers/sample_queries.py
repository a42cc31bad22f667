"""A seeded sample of the eligible queries of a clip set, for ann_peers.py and `recommend --batch`.

usage: sample_queries.py CLIPS_JSONL MUSIC_LABELS_TXT N OUT [--seed S]

Eligible: a clip carrying a music label other than "Music" (137), as `soundalike evaluate` counts them. Draws N of
them with Python's random.Random(S) (default seed 42; all of them when fewer) and writes their video_ids, one per
line, in the clips' order. The sample is not the one `evaluate` draws (that uses Rust's generator).
"""

import json
import random
import sys


def main():
    seed = 42
    if "--seed" in sys.argv:
        at = sys.argv.index("--seed")
        seed = int(sys.argv[at + 1])
        del sys.argv[at:at + 2]
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    clips_path, music_path, count, out = sys.argv[1:]
    with open(music_path) as f:
        music = {int(line) for line in f if line.strip()} - {137}
    eligible = []
    with open(clips_path, "rb") as f:
        for line in f:
            line = line.strip().rstrip(b",")
            if line in (b"", b"[", b"]"):
                continue
            # Only the head of the line: ingest writes the video_id, times and labels before the embedding.
            head = line[: line.index(b',"embedding":')] + b"}" if b',"embedding":' in line else line
            clip = json.loads(head)
            if music & set(clip["labels"]):
                eligible.append(clip["video_id"])
    chosen = set(random.Random(seed).sample(eligible, min(int(count), len(eligible))))
    with open(out, "w") as f:
        f.writelines(v + "\n" for v in eligible if v in chosen)
    print(f"sample_queries: {len(chosen)} of {len(eligible)} eligible clips to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
