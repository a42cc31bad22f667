"""Cargo's target directory, as cargo itself resolves it: `target/` unless CARGO_TARGET_DIR or a configuration
file says otherwise, which is common on developers' machines. Imported by the Python scripts and tests
(`target_dir()`); run, it prints the path for the shell scripts and .ci/run."""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def target_dir():
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    return Path(json.loads(metadata.stdout)["target_directory"])


if __name__ == "__main__":
    print(target_dir())
