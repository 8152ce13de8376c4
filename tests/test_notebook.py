"""notebooks/quickstart.ipynb runs top to bottom (smoke configuration) and imports only from lipsync."""

import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSYNC_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("LIPSYNC_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "corr(measured, target)" in outputs and "sync " in outputs and "leak " in outputs
    assert (tmp_path / "a_with_b.mp4").exists()
    corr = float(outputs.split("corr(measured, target) = ")[1].split()[0])
    assert corr > 0.8  # the pixel measurement follows the audio-driven mouth of the renderer
    imports = [line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()
               if line.startswith(("from ", "import "))]
    assert all(not line.startswith("from ") or line.startswith(("from lipsync", "from pathlib")) for line in imports)
