"""Every picture in docs/ comes from `python -m micrornn.viz.docs`, and none is older than its code.

The check compares text, not pixels: the DOT source of each graphviz picture, the numbers each plot
shows (both kept in docs/src/ by the same script), and the stepper page docs/bptt_stepper.html without
its laid-out SVG: its script and style have one source, micrornn/viz/static, and no other copy.
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


def test_the_stepper_page_is_generated_from_its_one_source():
    committed = (DOCS / f"{docs.STEPPER}.html").read_text(encoding="utf-8")
    assert docs.page_without_svg(committed) == docs.page_without_svg(docs.stepper_page()), REGENERATE
    static = Path(docs.__file__).with_name("static")
    script = (static / "stepper.js").read_text(encoding="utf-8")
    copies = [p for p in DOCS.rglob("*") if p.is_file() and p.suffix in (".js", ".css", ".html")
              and "tutorial_files" not in p.parts  # what running the notebook writes (not committed)
              and script[:200] in p.read_text(encoding="utf-8", errors="replace")]
    assert copies == [DOCS / f"{docs.STEPPER}.html"], copies  # the generated page, and nothing else
