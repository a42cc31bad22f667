#!/usr/bin/env python3
"""How spread out a set's neighbourhoods are: compares synthetic clips with real ones (see synth_check.md).

usage: synth_check.py CLIPS_JSONL... [--sample N] [--seed S]

For each `soundalike ingest` output given: each clip's mean vector (the de-quantized frames, value / 255 * 4 - 2,
averaged over the frames, as soundalike's default index), then, for a seeded sample of N clips (default 2,000,
seed 42), the exact cosine distance to their 1st, 5th and 10th nearest other clip, over all the set's clips. The
distance is (1 - cos) / 2, the scale soundalike reports for the angular metric (0 same direction, 1 opposite).
Prints one line per file with the medians (and the quartiles of the 10th). numpy only.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from ann_peers import exact_neighbours, load_clips  # noqa: E402

import numpy as np  # noqa: E402


def option(name, default):
    if name in sys.argv:
        at = sys.argv.index(name)
        value = int(sys.argv[at + 1])
        del sys.argv[at:at + 2]
        return value
    return default


def main():
    sample = option("--sample", 2000)
    seed = option("--seed", 42)
    paths = sys.argv[1:]
    if not paths or any(p.startswith("--") for p in paths):
        sys.exit(__doc__)
    print(f"median cosine distance (1 - cos) / 2 of mean vectors to the 1st, 5th, 10th nearest other clip; "
          f"{sample} sampled clips (seed {seed}), exact")
    print(f"{'clips':>9} {'1st':>7} {'5th':>7} {'10th':>7}  {'10th q25-q75':>13}  file")
    for path in paths:
        _, _, mean, _ = load_clips(path)
        unit = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        rows = np.sort(np.random.default_rng(seed).choice(len(unit), min(sample, len(unit)), replace=False))
        _, sims = exact_neighbours(unit, rows)
        dist = (1.0 - sims.astype(np.float64)) / 2.0
        first, fifth, tenth = (np.median(dist[:, r]) for r in (0, 4, 9))
        q25, q75 = np.percentile(dist[:, 9], [25, 75])
        print(f"{len(unit):>9} {first:>7.4f} {fifth:>7.4f} {tenth:>7.4f}  {q25:>6.4f}-{q75:.4f}  {path}", flush=True)


if __name__ == "__main__":
    main()
