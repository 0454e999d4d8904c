"""examples/lecture.ipynb runs top to bottom in a real Jupyter kernel, and shows what a notebook user expects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "lecture.ipynb"


def test_the_lecture_notebook_executes_and_shows_tables_plots_and_progress(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env_path = os.environ.get("PYTHONPATH")  # the kernel imports the dnnexp under test, as this process does
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, **({"PYTHONPATH": env_path} if env_path else {})})  # raises CellExecutionError if a cell fails

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    html = [out["data"]["text/html"] for out in outputs if "text/html" in out.get("data", {})]
    assert any("<table" in h and "vs_best" in h for h in html)  # the returned table, as a table
    assert sum(h.count("data:image/png;base64,") for h in html) >= 6  # two sweeps' plots, inline
    assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in outputs)  # rich's live progress bar
    assert (tmp_path / "outputs" / "notebook" / "activations" / "report.html").is_file()
    printed = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "activation=selux is not a choice; did you mean selu?" in printed
