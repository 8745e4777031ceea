"""Training metrics that outlive the run: one JSON object per line (``--log run.jsonl``), and a
TensorBoard event file (``--tensorboard DIR``) through tensorboardX or torch.utils.tensorboard when
one of them is installed (an optional extra: ``pip install "micrornn[tensorboard]"``).

Every record has ``kind`` ("train" or "val"), ``step`` and ``seconds`` (wall time since the log
opened, plus the seconds of earlier runs when resumed); train records add loss, lr, grad_norm and
chars_per_sec (items per second outside character models), val records add val_loss and val_chars.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

__all__ = ["MetricsLog", "read_log", "tensorboard_writer"]


def tensorboard_writer(logdir):
    """A SummaryWriter for ``logdir`` from tensorboardX, else torch.utils.tensorboard; ImportError naming
    the extra when neither is installed."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError('--tensorboard needs tensorboardX (or torch with tensorboard), an optional extra: '
                              'pip install "micrornn[tensorboard]"') from None
    return SummaryWriter(str(logdir))


class MetricsLog:
    """Writes metric records to a JSONL file and/or a TensorBoard writer; either may be None."""

    def __init__(self, path=None, tensorboard=None, append=False, seconds_before=0.0):
        self.path = None if path is None else Path(path)
        self.file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a" if append else "w", encoding="utf-8")
        self.writer = tensorboard_writer(tensorboard) if tensorboard is not None else None
        self.start, self.seconds_before = time.perf_counter(), float(seconds_before)

    def write(self, kind: str, step: int, **values) -> dict:
        """Record one line: ``kind``, ``step``, ``seconds`` and the given numbers (NaN/inf written as null)."""
        record = {"kind": kind, "step": int(step),
                  "seconds": round(self.seconds_before + time.perf_counter() - self.start, 3)}
        record.update({k: _plain(v) for k, v in values.items()})
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.writer is not None:
            for key in values:
                if isinstance(record[key], (int, float)):
                    self.writer.add_scalar(f"{kind}/{key}", record[key], int(step))
        return record

    def close(self) -> None:
        """Flush and close the file and the writer."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _plain(value):
    """A JSON-ready number: floats exact (repr round-trips), NaN and inf as None."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def read_log(path) -> dict:
    """A JSONL log as a history: {"step", "loss", "val_step", "val_loss", "val_chars"} lists.

    ValueError naming the line when a line is not a JSON object with ``kind`` and ``step``.
    """
    history: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_loss": [], "val_chars": []}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                kind, step = record["kind"], int(record["step"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a micrornn metrics record (a JSON object with "
                                 "kind and step)") from None
            if kind == "train" and record.get("loss") is not None:
                history["step"].append(step)
                history["loss"].append(float(record["loss"]))
            elif kind == "val" and record.get("val_loss") is not None:
                history["val_step"].append(step)
                history["val_loss"].append(float(record["val_loss"]))
                history["val_chars"].append(int(record.get("val_chars") or 0))
    return history
