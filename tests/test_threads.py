"""BLAS thread control: `micrornn train --threads` and micrornn.train.threads.blas_threads."""
import pytest

from micrornn.cli import main
from micrornn.train.threads import DEFAULT_TRAIN_THREADS, blas_thread_counts, blas_threads
from micrornn.train import Trainer

pytest.importorskip("threadpoolctl")
TINY = ["--hidden-size", "8", "--layers", "1", "--seq-len", "4", "--batch-size", "2", "--steps", "1",
        "--val-every", "0", "--sample-every", "0", "--no-plot", "--quiet"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question\n" * 4, encoding="utf-8")
    return path


def _train_seeing_threads(tmp_path, corpus, monkeypatch, *extra):
    """Run `micrornn train` and return the BLAS thread counts seen while Trainer.run ran."""
    seen, original = [], Trainer.run

    def run(self, *args, **kwargs):
        seen.append(blas_thread_counts())
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Trainer, "run", run)
    assert main(["train", "--data", str(corpus), "--checkpoint", str(tmp_path / "ck.npz"), "--overwrite", *TINY,
                 *extra]) == 0
    return seen[0]


def test_train_limits_blas_threads_and_restores_them(tmp_path, corpus, monkeypatch):
    before = blas_thread_counts()
    assert before, "numpy's BLAS should be visible to threadpoolctl"
    assert _train_seeing_threads(tmp_path, corpus, monkeypatch) == [DEFAULT_TRAIN_THREADS] * len(before)
    assert blas_thread_counts() == before


def test_threads_zero_leaves_blas_alone(tmp_path, corpus, monkeypatch):
    before = blas_thread_counts()
    with blas_threads(1):  # a caller's own limit must survive --threads 0
        assert _train_seeing_threads(tmp_path, corpus, monkeypatch, "--threads", "0") == [1] * len(before)
    assert _train_seeing_threads(tmp_path, corpus, monkeypatch, "--threads", "0") == before


def test_blas_threads_nests_and_restores():
    before = blas_thread_counts()
    with blas_threads(1):
        assert blas_thread_counts() == [1] * len(before)
        with blas_threads(None):
            assert blas_thread_counts() == [1] * len(before)
    assert blas_thread_counts() == before


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_bad_threads_exit_2(tmp_path, corpus, value, capsys):
    assert main(["train", "--data", str(corpus), *TINY, "--threads", value]) == 2
    err = capsys.readouterr().err
    assert "--threads" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_blas_threads_rejects_non_counts(value):
    with pytest.raises(ValueError, match="blas_threads"):
        with blas_threads(value):
            pass
