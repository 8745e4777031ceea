"""docs/tutorial.ipynb runs top to bottom (its asserts check the derivation against the engine), writes
its files beside itself, and executing it twice gives the same file byte for byte."""
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "tutorial.ipynb"
MISSING = [m for m in ("nbclient", "nbformat", "ipykernel", "matplotlib") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (pip install -e '.[dev]')"),
    pytest.mark.skipif(shutil.which("dot") is None,
                       reason="the Graphviz 'dot' program is not installed (.ci/run installs it)"),
]


def execute_copy(folder: Path) -> str:
    """Execute a copy of the tutorial in folder; return the executed notebook as written to disk."""
    import nbformat

    from micrornn.viz.docs import execute_notebook
    folder.mkdir()
    copy = folder / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    return nbformat.writes(execute_notebook(copy))


def masked(text: str) -> str:
    """The notebook with its picture payloads replaced by "(picture)"."""
    import nbformat
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for mime in ("image/svg+xml", "image/png"):
                if mime in output.get("data", {}):
                    output["data"][mime] = "(picture)"
    return nbformat.writes(nb)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(folder, executed notebook text) of one execution of a copy of the tutorial."""
    folder = tmp_path_factory.mktemp("tutorial") / "run"
    return folder, execute_copy(folder)


def test_tutorial_notebook_executes_and_writes_beside_itself(executed):
    import nbformat
    folder, text = executed
    nb = nbformat.reads(text, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if {"image/svg+xml", "image/png"} & set(o.get("data", {}))]
    assert len(pictures) >= 7  # folded, unrolled, graph, gradient flow, Jacobian view, LSTM, gates
    written = sorted(p.name for p in (folder / "tutorial_files").iterdir())
    assert written == ["bptt.html", "gates.png", "jacobian.png"]
    assert "wrote tutorial_files/bptt.html" in text
    assert not re.search(r"0x[0-9a-f]{6,}|/tmp/|tmp\w{8}", masked(text)), "a memory address or a temporary path in the outputs"


def test_executing_the_tutorial_twice_gives_the_same_file(executed, tmp_path):
    assert execute_copy(tmp_path / "again") == executed[1]


def test_the_committed_tutorial_is_the_executed_one(executed):
    """The committed notebook's text outputs are what executing it prints, numbers to round-off
    (pictures masked: they come from the local Graphviz and matplotlib)."""
    import sys
    spec = importlib.util.spec_from_file_location("docs_regenerate", REPO / "docs" / "regenerate.py")
    regenerate = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = regenerate
        spec.loader.exec_module(regenerate)
    fresh = re.sub(r"\(\d+ KB", "(N KB", masked(executed[1]))
    committed = re.sub(r"\(\d+ KB", "(N KB", masked(NOTEBOOK.read_text(encoding="utf-8")))
    assert regenerate.same_output(fresh, committed), "run `python docs/regenerate.py` (or `python -m micrornn.viz.docs`) and commit"
