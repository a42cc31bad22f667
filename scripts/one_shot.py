"""Median wall time of one-shot processes, several commands interleaved (BENCHMARKS.md, "one-shot").

python3 scripts/one_shot.py RUNS [--warm FILE]... -- CMD... [--- CMD...]...

Each command runs RUNS times, the commands taking turns (so that the machine's drift reaches each alike), with
stdout discarded; an environment assignment NAME=VALUE before a command's first word is set for it alone. Prints
each command's median, lowest and highest wall time in milliseconds, from the fork to the exit seen by wait.

--warm FILE reads FILE whole before each round, so that it is all in the page cache. On the bench's VMs the
kernel drops cached pages of an idle 3.5 GB index within minutes, and a one-shot query then pays more page
faults: the kernel's fault-around maps only the neighbouring pages that are cached (1,115 faults against 671
for the same process on the same index, 2026-12-06).
"""
import os
import statistics
import subprocess
import sys
import time

runs = int(sys.argv[1])
options = sys.argv[2:sys.argv.index("--")]
warm = [options[i + 1] for i, word in enumerate(options) if word == "--warm"]
rest = sys.argv[sys.argv.index("--") + 1:]
commands, current = [], []
for word in rest:
    if word == "---":
        commands.append(current)
        current = []
    else:
        current.append(word)
commands.append(current)
parsed = []
for command in commands:
    env = dict(os.environ)
    while command and "=" in command[0] and not command[0].startswith(("-", "/", ".")):
        name, value = command.pop(0).split("=", 1)
        env[name] = value
    parsed.append((command, env))


def read_whole(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


times = [[] for _ in parsed]
for command, env in parsed:  # warm-up: the index's pages into the page cache
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
for _ in range(runs):
    for path in warm:
        read_whole(path)
    for n, (command, env) in enumerate(parsed):
        started = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
        times[n].append((time.perf_counter() - started) * 1000)
for (command, _), t in zip(parsed, times):
    print(f"{statistics.median(t):7.2f} ms median ({min(t):.2f}-{max(t):.2f}) {' '.join(command)[:110]}")
