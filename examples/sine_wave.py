"""Sequence regression: an RNN predicts the next value of a noisy sine wave (mean squared error).

    python examples/sine_wave.py [--steps 600 --hidden-size 32 --plot sine.png]

Each training sequence is a sine wave with a random frequency, phase and amplitude plus a little
noise; at every step the RNN outputs its guess for the next (clean) value. The linear head has one
output, trained with micrornn.nn.functional.mse_loss. One value is not enough to know where a wave is
going (up or down? how fast?), so the hidden state has to integrate the past. We compare with
the naive guess "next value = current value" on fresh test waves.
"""
import argparse
import time

import numpy as np

from micrornn.nn import functional as F
from micrornn.nn import SequenceModel
from micrornn.engine.tensor import no_grad
from micrornn.train import fit, make_optimizer

T = 50


def waves(rng, batch, length=T + 1, noise=0.05):
    """Noisy inputs (length-1, B, 1) and clean next values (length-1, B, 1)."""
    t = np.arange(length)[:, None]
    freq, phase = rng.uniform(0.1, 0.4, batch), rng.uniform(0, 2 * np.pi, batch)
    amp = rng.uniform(0.5, 1.0, batch)
    clean = amp * np.sin(freq * t + phase)
    noisy = clean + noise * rng.standard_normal(clean.shape)
    return noisy[:-1, :, None], clean[1:, :, None]


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--hidden-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", metavar="FILE", help="also save a picture of a free-running prediction")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    model = SequenceModel(1, args.hidden_size, 1, rng=rng)
    optimizer = make_optimizer("adam", model.parameters(), lr=1e-2)

    def loss_fn(step):
        x, y = waves(rng, 32)
        prediction, _ = model(x)
        return F.mse_loss(prediction, y)

    start = time.perf_counter()
    losses = fit(loss_fn, optimizer, args.steps, clip=1.0, progress=False,
                 on_step=lambda s, l: print(f"step {s:4d}  mse {l:.5f}") if s % 100 == 0 else None)
    seconds = time.perf_counter() - start

    x, y = waves(np.random.default_rng(12345), 256)  # fresh test waves
    with no_grad():
        prediction, _ = model(x)
    skip = 5  # the first few steps have seen too little of the wave to know its frequency
    rnn = float(np.mean((prediction.data[skip:] - y[skip:]) ** 2))
    persistence = float(np.mean((x[skip:] - y[skip:]) ** 2))
    print(f"trained {len(losses)} steps in {seconds:.1f} s")
    print(f"test mse (steps {skip + 1}..{T}): RNN {rnn:.5f}   'next = current' {persistence:.5f}   "
          f"({persistence / rnn:.1f}x better)")

    if args.plot:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=(7, 3))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        steps = np.arange(1, T + 1)
        ax.plot(steps, y[:, 0, 0], color="0.6", linewidth=3, label="true next value")
        ax.plot(steps, x[:, 0, 0], ".", color="#08519c", label="input (noisy current value)")
        ax.plot(steps, prediction.data[:, 0, 0], color="#e6550d", label="RNN prediction")
        ax.legend(fontsize="small")
        ax.set_xlabel("t")
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
