"""Quality bar: a plain NumPy min-char-rnn (after Karpathy's gist) on micrornn's corpus and split.

    python benchmarks/min_char_rnn_baseline.py --seconds 120

Hidden 100, sequence 25, batch 1, Adagrad lr 0.1, gradients clipped to [-5, 5] element-wise,
weights ~ N(0, 0.01^2), the hidden state carried from chunk to chunk (reset at the end of the
data). It trains on the same training split as `micrornn train` for a wall-clock budget and
reports the validation loss (nats/char) on the same validation split, measured the same way
(the whole split as one stream from a zero state, the hidden state carried). Only the vocabulary
and the split come from micrornn; the model, BPTT, updates and scoring are NumPy.
Time spent in the intermediate evaluations is not counted against the budget.
"""
import argparse
import time

import numpy as np

from micrornn.train.data import Vocab, load_bundled_corpus, load_text, train_val_split
from micrornn.train import TrainConfig

H, SEQ, LR, CLIP = 100, 25, 0.1, 5.0


def init(V, rng):
    p = {"Wxh": rng.standard_normal((H, V)) * 0.01, "Whh": rng.standard_normal((H, H)) * 0.01,
         "Why": rng.standard_normal((V, H)) * 0.01, "bh": np.zeros(H), "by": np.zeros(V)}
    return p, {k: np.zeros_like(v) for k, v in p.items()}


def loss_and_grads(p, inputs, targets, hprev):
    """min-char-rnn's lossFun: summed cross-entropy over the chunk, gradients, last hidden state."""
    Wxh, Whh, Why, bh, by = p["Wxh"], p["Whh"], p["Why"], p["bh"], p["by"]
    hs, ps, loss = {-1: hprev}, {}, 0.0
    for t, (i, j) in enumerate(zip(inputs, targets)):
        hs[t] = np.tanh(Wxh[:, i] + Whh @ hs[t - 1] + bh)  # Wxh @ one_hot(i) is column i
        y = Why @ hs[t] + by
        e = np.exp(y - y.max())
        ps[t] = e / e.sum()
        loss -= np.log(ps[t][j])
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dhnext = np.zeros(H)
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        g["Why"] += np.outer(dy, hs[t])
        g["by"] += dy
        dh = Why.T @ dy + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        g["bh"] += dhraw
        g["Wxh"][:, inputs[t]] += dhraw
        g["Whh"] += np.outer(dhraw, hs[t - 1])
        dhnext = Whh.T @ dhraw
    for v in g.values():
        np.clip(v, -CLIP, CLIP, out=v)
    return loss, g, hs[len(inputs) - 1]


def evaluate(p, ids, chunk=1024):
    """Mean nats/char of predicting ids[1:], one stream from a zero state (as micrornn.train.evaluate)."""
    h, total = np.zeros(H), 0.0
    for s in range(0, len(ids) - 1, chunk):
        x, y = ids[s:s + chunk + 1][:-1], ids[s + 1:s + chunk + 1]
        hs = np.empty((len(x), H))
        for t, i in enumerate(x):
            h = hs[t] = np.tanh(p["Wxh"][:, i] + p["Whh"] @ h + p["bh"])
        logits = hs @ p["Why"].T + p["by"]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= logp[np.arange(len(y)), y].sum()
    return total / (len(ids) - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="training wall-clock budget")
    ap.add_argument("--data", help="text file (default: micrornn's bundled corpus)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-every", type=float, default=20.0, help="seconds between validations")
    args = ap.parse_args()

    text = load_bundled_corpus() if args.data is None else load_text(args.data)
    vocab = Vocab(text)
    ids = vocab.encode(text)
    train_ids, val_ids = train_val_split(ids, TrainConfig().val_fraction)  # the split micrornn train uses
    p, mem = init(len(vocab), np.random.default_rng(args.seed))
    print(f"min-char-rnn baseline: hidden {H}, seq {SEQ}, batch 1, Adagrad lr {LR}, clip ±{CLIP:g}; "
          f"{len(train_ids):,} training / {len(val_ids):,} validation characters; {args.seconds:g} s budget")
    print(f"  0.0 s   step 0   val {evaluate(p, val_ids):.4f} nats/char")

    pos, step, hprev, chars, trained = 0, 0, np.zeros(H), 0, 0.0
    smooth = np.log(len(vocab))
    next_report = args.report_every
    while trained < args.seconds:
        t0 = time.perf_counter()
        if pos + SEQ + 1 > len(train_ids):
            pos, hprev = 0, np.zeros(H)  # end of data: start over from a zero state
        inputs, targets = train_ids[pos:pos + SEQ].tolist(), train_ids[pos + 1:pos + SEQ + 1].tolist()
        loss, g, hprev = loss_and_grads(p, inputs, targets, hprev)
        for k in p:  # Adagrad
            mem[k] += g[k] * g[k]
            p[k] -= LR * g[k] / np.sqrt(mem[k] + 1e-8)
        smooth = 0.999 * smooth + 0.001 * loss / SEQ
        pos, step, chars = pos + SEQ, step + 1, chars + SEQ
        trained += time.perf_counter() - t0
        if trained >= next_report or trained >= args.seconds:
            next_report += args.report_every
            print(f"{trained:5.1f} s   step {step}   train {smooth:.4f}   val {evaluate(p, val_ids):.4f} "
                  f"nats/char   ({chars / trained:,.0f} chars/s)", flush=True)
    val = evaluate(p, val_ids)
    print(f"final: {step} steps, {chars:,} characters in {trained:.1f} s ({chars / trained:,.0f} chars/s); "
          f"validation loss {val:.4f} nats/char")


if __name__ == "__main__":
    main()
