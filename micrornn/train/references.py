"""Published and measured validation losses on tinyshakespeare's standard split, to place a run among.

All are nats per character over the last 10% of the text (nanoGPT's shakespeare_char split). The
CPU figures were measured on a 2-core x86_64 VM (docs/quality.md says how).
"""
from __future__ import annotations

from micrornn.train.data import BUNDLED_CORPUS_SHA256

__all__ = ["REFERENCES", "standing", "is_standard_split"]

# (validation nats/char, what it is)
REFERENCES = [
    (1.470, "nanoGPT shakespeare_char: 10.7M-parameter transformer on an A100 GPU (published)"),
    (1.567, "PyTorch 2x256 tanh RNN, 0.23M parameters, 160 s on 2 CPU cores"),
    (1.604, "PyTorch 2x256 LSTM, 0.88M parameters, 160 s on 2 CPU cores"),
    (1.898, "nanoGPT's CPU configuration: 4-layer transformer, 0.80M parameters, 165 s on 2 CPU cores"),
    (1.546, "PyTorch 2x512 tanh RNN, the rnn preset's recipe, 15 min on one CPU core"),
    (1.450, "PyTorch 2x320 GRU, the gru preset's recipe, 15 min on one CPU core"),
    (1.517, "Kneser-Ney 7-gram character model (counting, no network: benchmarks/ngram_baseline.py)"),
    (1.515, "PyTorch 2x256 LSTM, the lstm preset's recipe, 15 min on one CPU core"),
    (1.422, "PyTorch 2x384 GRU, the best preset's recipe, 60 min on one CPU core"),
]


def is_standard_split(trainer) -> bool:
    """Whether the trainer trains on the bundled tinyshakespeare with the standard 10% validation split."""
    return trainer.text_sha256 == BUNDLED_CORPUS_SHA256 and trainer.config.val_fraction == 0.1


def standing(val_loss, trainer) -> str:
    """Lines placing `val_loss` among the references (or saying why they do not apply)."""
    if not is_standard_split(trainer):
        return ("(the reference figures are for the bundled tinyshakespeare with the standard 10% split; "
                "this run's text or split differs)")
    rows = sorted(REFERENCES + [(val_loss, "this run  <--")])
    lines = ["where this stands (validation nats/char, tinyshakespeare's standard split):"]
    lines += [f"  {nats:.3f}  {what}" for nats, what in rows]
    return "\n".join(lines)
