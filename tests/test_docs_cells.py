"""docs/cells.md: every python block runs (in order, one namespace) and prints the text block after it."""
import contextlib
import io
import pathlib
import re

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "cells.md"


def test_cells_page_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that wrote a file would write it here
    text = PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"```(python|text)\n(.*?)```", text, re.S)
    assert sum(kind == "python" for kind, _ in blocks) >= 5
    namespace = {}
    for i, (kind, code) in enumerate(blocks):
        if kind != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(PAGE), "exec"), namespace)
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if following and following[0] == "text":
            assert out.getvalue() == following[1], code
    assert list(tmp_path.iterdir()) == []
