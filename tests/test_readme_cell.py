"""The README's "Writing your own cell" example runs and prints what the README shows."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from micrornn.engine import ops

README = Path(__file__).parents[1] / "README.md"


def _section_blocks():
    """The python block of the section and the output block after it."""
    text = README.read_text()
    section = text[text.index("## Writing your own cell"):]
    section = section[:section.index("\n## ", 1)]
    code, output = re.findall(r"```(?:python)?\n(.*?)```", section, flags=re.S)[:2]
    return code, output


def test_the_own_cell_example_prints_what_the_readme_shows():
    code, expected = _section_blocks()
    printed, before = io.StringIO(), dict(ops.PRIMITIVES)
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(README), "exec"), {"__name__": "readme_cell"})
    finally:  # the example registers a primitive; other tests walk the table
        ops.PRIMITIVES.clear()
        ops.PRIMITIVES.update(before)
    assert printed.getvalue() == expected
    assert "defprimitive" in code and ".chunk(" in code and "mr.where(" in code and ".abs()" in code
