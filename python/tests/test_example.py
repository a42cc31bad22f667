"""examples/ray_catalogue.py, run as a data scientist runs it: generated songs embedded on a local Ray cluster,
Parquet written, one and a sharded index built, every track's recommendations written, Milvus Lite loaded."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import soundalike
from conftest import REPO, need


def test_the_ray_catalogue_example_runs_end_to_end(formula_weights, tmp_path):
    need("ray", "ray")
    need("pymilvus", "milvus")
    weights, pca = formula_weights
    out = tmp_path / "catalogue"
    done = subprocess.run(
        [sys.executable, REPO / "examples" / "ray_catalogue.py", "--demo", "12", out,
         "--weights", weights, "--pca", pca, "--shards", "3", "--k", "5"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Not stdout: Ray's raylet prints its own warnings there (a CI run's stdout began with one).
    summary = json.loads((out / "summary.json").read_text())
    assert summary["embedded"]["tracks"] == 12 and summary["embedded"]["failed"] == 0
    assert summary["indexed"]["clips"] == 12 and summary["sharded"]["shards"] == 3
    recommendations = pq.read_table(out / "recommendations.parquet").to_pylist()
    assert len(recommendations) == 12
    index = soundalike.Index(out / "catalogue.idx")
    for row in recommendations:
        assert row["neighbours"] == [hit["video_id"] for hit in index.recommend(id=row["video_id"], k=5)]
    assert summary["milvus"]["rows"] == 12 and summary["milvus"]["agreement_first_track"] == 1.0
    with pytest.raises(FileNotFoundError):
        soundalike.Index(out / "no.idx")
