"""Every example's --help prints the whole first paragraph of its docstring, never a sentence cut in two."""
import ast
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_help_description_is_not_cut(path):
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    first = " ".join(doc.split("\n\n")[0].split())
    proc = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    shown = " ".join(proc.stdout.split())
    assert first in shown, (first, proc.stdout)
