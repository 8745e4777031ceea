"""Every ```python block in README.md and docs/*.md runs, and prints what the page shows after it;
every generated region names a job of docs/regenerate.py, and the deterministic ones are up to date."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_regenerate", REPO / "docs" / "regenerate.py")
regenerate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = regenerate
_spec.loader.exec_module(regenerate)
FIX = "run `python docs/regenerate.py` and commit the pages"


@pytest.mark.parametrize("page", regenerate.pages(), ids=lambda p: p.name)
def test_every_python_block_runs_and_prints_what_the_page_shows(page):
    blocks = regenerate.run_blocks(page)
    for block in blocks:
        if block.shown is not None and block.printed is not None:
            assert regenerate.same_output(block.printed, block.shown), (
                f"{page.name}: the output shown differs from what\n{block.code}\nprints:\n{block.printed}; {FIX}")


def test_the_pages_have_blocks_and_outputs():
    counted = {page.name: len(regenerate.PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")))
               for page in regenerate.pages()}
    assert counted["README.md"] >= 2 and counted["engine.md"] >= 3 and counted["rnn.md"] >= 3, counted


def test_a_wrong_output_is_noticed(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 2\nprint(x * 3)\n```\n\n```text\n5\n```\n\n```python\nprint(x)\n```\n")
    first, second = regenerate.run_blocks(page)
    assert first.shown == "5\n" and first.printed == "6\n" and second.shown is None and second.printed == "2\n"
    assert regenerate.write_block_outputs(page) and "```text\n6\n```" in page.read_text()


def test_blocks_run_in_a_temporary_folder_and_leave_the_primitive_table_alone(tmp_path, monkeypatch):
    from micrornn.engine import ops
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text('```python\nimport os, micrornn as mr\nopen("left.txt", "w").write("x")\n'
                    'mr.ops.defprimitive("docs_test_op", lambda a: (a, None), lambda g, s, n: (g,))\n```\n')
    before = set(ops.PRIMITIVES)
    regenerate.run_blocks(page)
    assert set(ops.PRIMITIVES) == before and sorted(p.name for p in tmp_path.iterdir()) == ["page.md"]


def test_every_generated_region_names_a_job_and_every_job_has_a_region():
    regions = regenerate.regions()
    assert set(regions) == set(regenerate.JOBS), set(regions) ^ set(regenerate.JOBS)


@pytest.mark.parametrize("name", [n for n, job in regenerate.JOBS.items() if job.checked])
def test_deterministic_regions_are_up_to_date(name):
    page, shown = regenerate.regions()[name]
    made = regenerate.JOBS[name].make()
    assert regenerate.same_output(made, shown), f"{page.name}: region {name} is stale; what the job makes:\n{made}\n{FIX}"


def test_outputs_compare_text_exactly_and_numbers_to_round_off():
    same = regenerate.same_output
    assert same("worst 1.73e-17, loss 44.7331734354848\n", "worst 6.94e-18, loss 44.73317343548481\n")
    assert not same("loss 44.7331\n", "loss 44.7332\n") and not same("PASS 1\n", "FAIL 1\n")
    assert not same("1 2\n", "1\n") and not same("True\n", "True\nTrue\n")


def test_the_script_lists_its_regions_and_refuses_an_unknown_one(capsys):
    assert regenerate.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in regenerate.JOBS) and "bench" in listed and "slow" in listed
    with pytest.raises(SystemExit) as refused:
        regenerate.main(["--only", "no-such-region"])
    assert refused.value.code == 2 and "unknown region(s) no-such-region" in capsys.readouterr().err
