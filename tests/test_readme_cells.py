"""The README's "Gated and custom cells" section: its code runs and prints what the README shows."""
import contextlib
import importlib.util
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def section_blocks():
    """[(code, expected output)] of the section, in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Gated and custom cells")
    section = text[start:text.index("\n## ", start + 1)]
    return re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```", section, re.S)


def test_readme_cells_section_runs_and_prints_its_output():
    blocks = section_blocks()
    assert len(blocks) == 3
    has_torch = importlib.util.find_spec("torch") is not None
    namespace = {}
    for code, expected in blocks:
        if "import torch" in code and not has_torch:
            continue  # the torch round trip is shown for readers who have it
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), namespace)
        assert out.getvalue() == expected, code
