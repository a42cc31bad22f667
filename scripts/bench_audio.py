#!/usr/bin/env python3
"""Measures `soundalike embed` on a 3.5-minute 44.1 kHz stereo song, side by side with torchvggish.

usage: python3 scripts/bench_audio.py [--runs N] [--torch-python PATH]

--torch-python: a Python with torch (CPU), torchvggish, resampy and soundfile, outside the repo:
    python3 -m venv ../torch-venv && ../torch-venv/bin/pip install torch torchvggish resampy soundfile numpy
Without it only soundalike is timed.

The song: 210 s of pink noise under an amplitude-modulated 440 Hz tone, 44,100 Hz, 2 channels, 16-bit, made by
sox (deterministic: `-R`). soundalike runs with the formula weights the golden test writes (the real weights
cannot be downloaded on the build machines; the arithmetic and its cost are the same). Each run is a whole
process, weights loading included, for both tools: soundalike's `embed` (decode, resample, log-mel, network,
PCA) and torchvggish's `forward(samples, rate)` (resampy, log-mel, network) after reading the WAV with
soundfile. The two alternate, round by round, so that a noisy machine slows both alike; the figures are
medians of --runs rounds (default 5).
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cargo_target import target_dir

ROOT = Path(__file__).resolve().parent.parent
BIN = target_dir() / "release" / "soundalike"
WORK = ROOT / "target" / "bench-audio"
SONG_SECONDS = 210.0


def run(cmd, env=None):
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{proc.stderr.decode()}")
    return wall


def song():
    path = WORK / "song210.wav"
    if not path.exists():
        subprocess.run(
            ["sox", "-R", "-D", "-n", "-r", "44100", "-c", "2", "-b", "16", str(path),
             "synth", str(SONG_SECONDS), "pinknoise", "synth", str(SONG_SECONDS), "sine", "amod", "440",
             "vol", "0.5"],
            check=True,
        )
    return path


def formula_weights():
    path = WORK / "formula.safetensors"
    if not path.exists():
        subprocess.run(
            ["cargo", "run", "--release", "--locked", "-q", "--example", "test_inputs", "--",
             "formula-weights", str(path)],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-python")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    wav, weights = song(), formula_weights()
    pca = ROOT / "fixtures" / "vggish-golden" / "pca_params.npz"
    ours_cmd = [str(BIN), "embed", str(wav), "--weights", str(weights), "--pca", str(pca), "-q",
                "-o", str(WORK / "song.jsonl")]
    torch_cmd = None
    if args.torch_python:
        torch_cmd = [args.torch_python, str(ROOT / "scripts" / "peers" / "torchvggish_time.py"), str(wav)]
    ours, theirs = [], []
    for round_ in range(args.runs):
        ours.append(run(ours_cmd))
        if torch_cmd:
            theirs.append(run(torch_cmd))
        print(f"round {round_ + 1}: soundalike {ours[-1]:.2f} s"
              + (f", torchvggish {theirs[-1]:.2f} s" if theirs else ""), file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the end")
    print(f"song: {SONG_SECONDS:.0f} s, 44,100 Hz stereo 16-bit WAV; {args.runs} alternating rounds, medians")
    print("| tool | wall (median) | x real time |")
    print("| --- | ---: | ---: |")
    m = statistics.median(ours)
    print(f"| soundalike embed | {m:.2f} s | {SONG_SECONDS / m:.1f}x |")
    if theirs:
        t = statistics.median(theirs)
        print(f"| torchvggish (torch CPU) | {t:.2f} s | {SONG_SECONDS / t:.1f}x |")
        print(f"\nsoundalike is {t / m:.2f}x torchvggish's speed")


if __name__ == "__main__":
    main()
