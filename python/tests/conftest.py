"""Shared fixtures: the command line (the oracle every answer is compared with), the bundled AudioSet sample
ingested and indexed by it, and VGGish's formula weights (fixtures/vggish-golden/README.md) for audio."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
RECORDS = FIXTURES / "audioset_v1_embeddings"
WAV = FIXTURES / "audio" / "source.wav"
GOLDEN = FIXTURES / "vggish-golden"

sys.path.insert(0, str(REPO / "scripts"))
from cargo_target import target_dir  # noqa: E402


def cli_path():
    """The release binary `cargo test --release` built (or $SOUNDALIKE_BIN); built here when absent."""
    given = os.environ.get("SOUNDALIKE_BIN")
    if given:
        return Path(given)
    binary = target_dir() / "release" / "soundalike"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "--release", "--locked", "--bin", "soundalike"],
            cwd=REPO,
            check=True,
            stdin=subprocess.DEVNULL,
        )
    return binary


class Cli:
    """Runs the soundalike binary."""

    def __init__(self, path):
        self.path = path

    def run(self, *args, check=True):
        done = subprocess.run(
            [str(self.path), *map(str, args)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"soundalike {' '.join(map(str, args))} failed: {done.stderr}")
        return done

    def json_lines(self, *args):
        return [json.loads(line) for line in self.run(*args).stdout.splitlines() if line.strip()]

    def error(self, *args):
        """The one `error: ` line of a run that must fail, without its prefix."""
        done = self.run(*args, check=False)
        assert done.returncode != 0, f"soundalike {args} should fail"
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        return lines[0][len("error: "):]


@pytest.fixture(scope="session")
def cli():
    return Cli(cli_path())


@pytest.fixture(scope="session")
def clips_file(cli, tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "clips.jsonl"
    cli.run("ingest", RECORDS, "-o", path, "-q")
    return path


@pytest.fixture(scope="session")
def clips(clips_file):
    with open(clips_file) as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="session")
def index_dir(cli, clips_file, tmp_path_factory):
    """The fixture index, built by the command line."""
    path = tmp_path_factory.mktemp("index") / "music.idx"
    cli.run("index", "--index", path, clips_file, "-q")
    return path


def formula_values(n, seed, shift):
    """Element i of a formula tensor (tests/it/common/formula.rs): a 16-bit hash of i and seed, times
    2^-(15 + shift), exact in float32."""
    m32 = np.uint64(0xFFFFFFFF)
    h = (np.arange(n, dtype=np.uint64) * np.uint64(2_654_435_761) + np.uint64((seed + 1) * 40_503)) & m32
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(2_246_822_519)) & m32
    h ^= h >> np.uint64(13)
    v = (h >> np.uint64(16)).astype(np.int64) - 32_768
    return (v.astype(np.float64) * 2.0 ** -(15 + shift)).astype(np.float32)


# torchvggish's layers, their weight shapes and the formula's weight shift (bias shift 6).
LAYERS = [
    ("features.0", (64, 1, 3, 3), 0),
    ("features.3", (128, 64, 3, 3), 3),
    ("features.6", (256, 128, 3, 3), 4),
    ("features.8", (256, 256, 3, 3), 4),
    ("features.11", (512, 256, 3, 3), 4),
    ("features.13", (512, 512, 3, 3), 5),
    ("embeddings.0", (4096, 12288), 5),
    ("embeddings.2", (4096, 4096), 5),
    ("embeddings.4", (128, 4096), 5),
]


@pytest.fixture(scope="session")
def formula_weights(tmp_path_factory):
    """VGGish's formula weights as a safetensors file (288 MB) and the golden PCA: (weights, pca)."""
    tensors = []
    for layer, (name, shape, shift) in enumerate(LAYERS):
        tensors.append((f"{name}.weight", shape, 2 * layer, shift))
        tensors.append((f"{name}.bias", (shape[0],), 2 * layer + 1, 6))
    header, offset = {}, 0
    for name, shape, _, _ in tensors:
        size = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = tmp_path_factory.mktemp("weights") / "formula.safetensors"
    with open(path, "wb") as out:
        out.write(len(text).to_bytes(8, "little"))
        out.write(text)
        for _, shape, seed, shift in tensors:
            out.write(formula_values(int(np.prod(shape)), seed, shift).tobytes())
    return path, GOLDEN / "pca_params.npz"


def need(module, what):
    """Imports `module` for a test that needs it, or skips the test saying so; fails instead when
    $SOUNDALIKE_REQUIRE names `what` (CI installs it and requires it: a skip there would hide a missing step)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        required = os.environ.get("SOUNDALIKE_REQUIRE", "").split(",")
        message = f"needs {what} ({module}: {error}); pip install \"./python[{what}]\""
        if what in required:
            pytest.fail(f"required by SOUNDALIKE_REQUIRE but missing: {message}")
        pytest.skip(message)
