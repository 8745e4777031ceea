"""Every test runs in a temporary folder of its own: tests never read or write the current folder, so
a `runs/` left by `micrornn train` in a checkout (or any other file there) cannot change a result."""
import pytest


@pytest.fixture(autouse=True)
def _run_in_a_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
