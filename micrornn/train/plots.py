"""Pictures of a training run: the loss curves."""
from __future__ import annotations

import numpy as np


def plot_history(history, path, title="micrornn: character-level RNN"):
    """Save the training and validation loss curves (nats/char vs step) as an image at `path`.

    Needs matplotlib (``pip install "micrornn[plot]"``); raises ImportError without it.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('the loss plot needs matplotlib, an optional extra: pip install "micrornn[plot]"') \
            from None
    steps, losses = np.asarray(history["step"]), np.asarray(history["loss"], dtype=float)
    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(losses):
        ax.plot(steps, losses, color="#9ecae1", linewidth=0.6, label="training loss (per step)")
        w = max(1, min(50, len(losses) // 10))
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, color="#08519c", linewidth=1.5, label=f"training loss ({w}-step mean)")
    if history["val_step"]:  # a prefix of the split during training, the whole split at the end: two series
        chars = history.get("val_chars") or [0] * len(history["val_step"])  # not recorded (older runs): whole split
        for whole, style, label in ((False, "o-", "validation, first part of the split"),
                                    (True, "D", "validation, whole split")):
            points = [(s, v) for s, v, n in zip(history["val_step"], history["val_loss"], chars) if (n == 0) == whole]
            if points:
                ax.plot(*zip(*points), style, color="#e6550d" if not whole else "#a63603", markersize=4 + whole,
                        label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path
