"""Every picture in docs/ comes from `python -m micrornn.viz.docs`, and none is older than its code.

The check compares text, not pixels: the DOT source of each graphviz picture, the numbers each plot
shows, and the stepper page without its laid-out SVG, all kept in docs/src/ by the same script.
"""
from pathlib import Path

import pytest

from micrornn.viz import docs

DOCS = Path(__file__).resolve().parents[1] / "docs"
REGENERATE = "run `python -m micrornn.viz.docs --skip-training` and commit docs/"


@pytest.fixture(scope="module")
def expected():
    return docs.texts()


def test_every_docs_picture_is_made_by_the_script():
    made = ({f"{name}.png" for name in [*docs.GRAPHS, *docs.PLOTS]} | {f"{docs.STEPPER}.html"}
            | set(docs.PROGRAM_PICTURES))
    present = {p.name for p in DOCS.iterdir() if p.suffix in (".png", ".svg", ".pdf", ".html")}
    assert present == made, f"pictures in docs/ that the script does not make (or misses): {present ^ made}"
    for name in made:
        assert (DOCS / name).stat().st_size > 1000, name


def test_docs_pictures_are_as_new_as_the_code_that_draws_them(expected):
    stale = [name for name, text in expected.items()
             if not (DOCS / "src" / name).exists() or (DOCS / "src" / name).read_text(encoding="utf-8") != text]
    assert not stale, f"stale pictures in docs/ (their source text changed): {stale}; {REGENERATE}"
    assert set(expected) == {p.name for p in (DOCS / "src").iterdir()}


def test_the_staleness_check_notices_a_changed_drawing(expected, monkeypatch):
    monkeypatch.setitem(docs.GRAPHS, "viz_folded", lambda: docs.draw_folded(docs._model(3, layers=3)[0]))
    assert docs.texts()["viz_folded.dot"] != (DOCS / "src" / "viz_folded.dot").read_text(encoding="utf-8")
