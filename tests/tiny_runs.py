"""Shared by the training tests: two short corpora and the settings of a tiny, fast run, for the
Trainer (tiny, quiet_run) and for `micrornn train` (TINY_TRAIN, write_corpus; conftest.py's `corpus`
fixture writes WINTER into the test's temporary folder)."""
from pathlib import Path

SOLILOQUY = ("To be, or not to be, that is the question:\n"
             "Whether 'tis nobler in the mind to suffer\n"
             "The slings and arrows of outrageous fortune,\n") * 4  # 528 characters
WINTER = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 8

# `micrornn train` options of a 12-unit one-layer float64 model on short windows that never samples;
# each test adds --val-every, --quiet, --no-plot as it needs
TINY_TRAIN = ["--hidden-size", "12", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--sample-every", "0",
              "--sample-length", "20", "--dtype", "float64"]


def write_corpus(folder: Path, text: str = WINTER) -> Path:
    """text written (UTF-8) to folder/corpus.txt; returns that path."""
    path = Path(folder) / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


def tiny(**kw):
    """A TrainConfig of a 12-unit one-layer float64 model for 10 steps, without validation, sampling,
    warmup or state resets; keywords override any field."""
    from micrornn.train import TrainConfig  # here, not at the top: conftest.py imports this module for every test
    base = dict(hidden_size=12, num_layers=1, seq_len=8, batch_size=4, steps=10, val_every=0, sample_every=0,
                sample_length=20, dtype="float64", warmup=0, state_reset=0.0)
    return TrainConfig(**{**base, **kw})


def quiet_run(trainer, **kw):
    """trainer.run without the progress bar or log lines."""
    return trainer.run(progress=False, log=lambda s: None, **kw)
