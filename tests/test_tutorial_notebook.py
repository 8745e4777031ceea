"""docs/tutorial.ipynb runs top to bottom (its asserts check the derivation against the engine)."""
import importlib.util
import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"
MISSING = [m for m in ("nbclient", "nbformat", "ipykernel", "matplotlib") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (pip install -e '.[dev]')")
@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz 'dot' program is not installed (.ci/run installs it)")
def test_tutorial_notebook_executes():
    from micrornn.viz.docs import execute_notebook

    nb = execute_notebook(NOTEBOOK)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if {"image/svg+xml", "image/png"} & set(o.get("data", {}))]
    assert len(pictures) >= 7  # folded, unrolled, graph, gradient flow, Jacobian view, LSTM, gates
