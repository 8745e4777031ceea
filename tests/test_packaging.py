"""Packaging: every data file under micrornn/ is listed in pyproject's package-data (else a wheel drops it)."""
from fnmatch import fnmatch
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _package_data_globs():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-data"]["micrornn"]


def test_every_data_file_is_shipped():
    package = ROOT / "micrornn"
    data_files = [p.relative_to(package).as_posix() for p in package.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    globs = _package_data_globs()
    missing = [f for f in data_files if not any(fnmatch(f, g) for g in globs)]
    assert data_files, "expected the bundled corpus at least"
    assert not missing, f"data files a wheel would not contain: {missing}"
