"""examples/notebook.ipynb runs top to bottom (so that it never rots), with the VGGish weights installed (the
formula weights, through the environment) and without."""

import os

import nbformat
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOK = REPO / "examples" / "notebook.ipynb"


def run_notebook(env):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "examples")}}
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/html", ""))
        + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def test_the_notebook_runs_with_the_weights(formula_weights):
    weights, pca = formula_weights
    text = run_notebook({"SOUNDALIKE_WEIGHTS": str(weights), "SOUNDALIKE_PCA": str(pca)})
    assert "779 music clips from 1948 records" in text
    # The opera clip's nearest neighbour, as the README shows it, with its YouTube link.
    assert "1 dRvVBKLxCgU 0.7186 https://www.youtube.com/watch?v=dRvVBKLxCgU&t=0s" in text
    assert '<a href="https://www.youtube.com/watch?v=dRvVBKLxCgU&amp;t=0s"' in text
    assert "source.wav: 2 rows of 128 values, uint8" in text
    assert "first row: [" in text


def test_the_notebook_runs_without_the_weights(tmp_path):
    text = run_notebook(
        {"SOUNDALIKE_WEIGHTS": "", "SOUNDALIKE_PCA": "", "XDG_DATA_HOME": str(tmp_path), "HOME": str(tmp_path)}
    )
    assert "The VGGish weights are not installed: VGGish's files were not found" in text
