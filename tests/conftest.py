"""Every test runs in a temporary folder of its own: tests never read or write the current folder, so
a `runs/` left by `micrornn train` in a checkout (or any other file there) cannot change a result.
Shared fixtures: `corpus`, a short text file for `micrornn train`."""
import pytest

from tiny_runs import write_corpus


@pytest.fixture(autouse=True)
def _run_in_a_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def corpus(tmp_path):
    """tmp_path/corpus.txt holding tiny_runs.WINTER (two lines of Richard III, eight times)."""
    return write_corpus(tmp_path)
