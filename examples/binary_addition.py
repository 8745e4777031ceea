"""An RNN learns 8-bit binary addition, and gets every held-out sum right.

    python examples/binary_addition.py [--steps 3000 --hidden-size 16 --seed 0]

Each example adds two numbers a, b in 0..255. The RNN reads their bits least significant first,
one pair (a_t, b_t) per time step, and at each step predicts bit t of a + b (9 steps: the last
reads (0, 0) and outputs the carry). To get it right it must remember the carry in its hidden
state, which is exactly what a recurrent connection is for. 20% of all 65,536 pairs are held
out; training stops once every one of them is added correctly (all 9 bits).
"""
import argparse
import time

import numpy as np

from micrornn.nn import SequenceModel
from micrornn.train import fit, make_optimizer

BITS, T = 8, 9


def bits(n):
    """(T, len(n)) bits of each number, least significant first."""
    return ((np.asarray(n)[None, :] >> np.arange(T)[:, None]) & 1).astype(np.int64)


def encode(pairs):
    """Inputs (T, B, 2) float and targets (T, B) int for an array of (a, b) pairs."""
    a, b = pairs[:, 0], pairs[:, 1]
    return np.stack([bits(a), bits(b)], axis=2).astype(np.float64), bits(a + b)


def accuracy(model, x, y):
    """Fraction of sums with every bit right."""
    logits, _ = model(x)
    return float(np.mean(np.all(logits.data.argmax(axis=2) == y, axis=0)))


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    ap.add_argument("--steps", type=int, default=3000, help="maximum training steps")
    ap.add_argument("--hidden-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    pairs = np.array([(a, b) for a in range(2 ** BITS) for b in range(2 ** BITS)])
    rng.shuffle(pairs)
    held_out, train = pairs[:len(pairs) // 5], pairs[len(pairs) // 5:]
    x_test, y_test = encode(held_out)
    model = SequenceModel(2, args.hidden_size, 2, rng=rng)
    optimizer = make_optimizer("adam", model.parameters(), lr=1e-2)

    def loss_fn(step):
        x, y = encode(train[rng.integers(0, len(train), args.batch_size)])
        loss, _ = model.loss(x, y, reduction="mean")
        return loss

    reached = {}

    def check(step, loss):
        if step % 100 == 0 or step == args.steps:
            acc = accuracy(model, x_test, y_test)
            print(f"step {step:5d}  loss {loss:.4f}  held-out sums all correct: {acc:7.2%}")
            if acc == 1.0:
                reached["step"] = step
                return True
        return False

    print(f"training on {len(train):,} pairs, testing on {len(held_out):,} held-out pairs")
    start = time.perf_counter()
    fit(loss_fn, optimizer, args.steps, clip=5.0, progress=False, on_step=check)
    seconds = time.perf_counter() - start
    a, b = held_out[0]
    x, _ = encode(held_out[:1])
    logits, _ = model(x)
    guess = int((logits.data.argmax(axis=2)[:, 0] << np.arange(T)).sum())
    print(f"example: {a:3d} + {b:3d} = {a + b:3d}; the RNN says {guess} "
          f"({np.binary_repr(a, BITS)} + {np.binary_repr(b, BITS)} = {np.binary_repr(guess, T)})")
    if "step" in reached:
        print(f"100% of held-out sums correct after {reached['step']} steps ({seconds:.1f} s)")
    else:
        print(f"not yet 100% after {args.steps} steps ({seconds:.1f} s); try more --steps")


if __name__ == "__main__":
    main()
