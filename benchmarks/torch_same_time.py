"""micrornn against a PyTorch model of the same kind and size, trained for the same wall time.

    python benchmarks/torch_same_time.py --cell rnn --hidden-size 256 --seconds 120
    python benchmarks/torch_same_time.py --preset lstm            # the preset's model and budget
    python benchmarks/torch_same_time.py --only torch --threads 2 --cell gru --seconds 900

Both sides train on micrornn's bundled tinyshakespeare with the standard split, read the same
(seq_len, batch) chunks of the same contiguous streams, start from one-hot inputs (the same
parameter count), and use the same recipe: Adam, linear warm-up then cosine decay driven by the
larger of steps and wall time, global gradient-norm clipping, occasional state resets, float32.
Each stops when its wall-clock budget (final evaluation included) is used up, and is scored the
same way: the whole validation split as one stream with the hidden state carried. The two runs
take turns in one process (PyTorch first), so they see the same machine, and the script prints
each one's steps, characters per second and validation nats and bits per character. It needs
PyTorch (never a micrornn dependency) and says so if it is missing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from micrornn.train.data import BatchStream, Vocab, load_bundled_corpus, train_val_split
from micrornn.train.threads import blas_threads
from micrornn.train import TrainConfig, Trainer, bits_per_char
from micrornn.train.config import PRESETS
from micrornn.train.carried_state import reset_some_streams
from micrornn.train.schedule import learning_rate
from micrornn.train.stopping import Budget


def options():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), help="take the model, recipe and budget of this preset")
    ap.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn")
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--state-reset", type=float, default=0.01)
    ap.add_argument("--seconds", type=float, default=120.0, help="wall-clock budget of each run, evaluation included")
    ap.add_argument("--steps", type=int, default=1_000_000, help="also stop (and end the cosine) at this step")
    ap.add_argument("--threads", type=int, default=1,
                    help="PyTorch intra-op threads (default 1, as micrornn; on a busy 2-core machine 2 threads "
                         "measured over 100x slower: its OpenMP workers wait for cores)")
    ap.add_argument("--micrornn-threads", type=int, default=1, help="BLAS threads for micrornn (default 1, as "
                                                                     "`micrornn train`)")
    ap.add_argument("--only", choices=("torch", "micrornn"), help="run one side only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.preset:
        p = {**TrainConfig().__dict__, **PRESETS[args.preset]}
        args.cell, args.hidden_size, args.layers = p["cell"], p["hidden_size"], p["num_layers"]
        args.seq_len, args.batch_size, args.lr, args.warmup = p["seq_len"], p["batch_size"], p["lr"], p["warmup"]
        args.clip, args.dropout, args.state_reset = p["clip"], p["dropout"], p["state_reset"]
        args.seconds, args.steps = p["time_budget"], p["steps"]
    return args


def torch_model(torch, args, V):
    """nn.RNN/LSTM/GRU over one-hot inputs and a linear head: the layout of micrornn's SequenceModel."""
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[args.cell]

    class CharModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = layer(V, args.hidden_size, args.layers, dropout=args.dropout)
            self.head = torch.nn.Linear(args.hidden_size, V)

        def forward(self, x, state=None):
            out, state = self.rnn(torch.nn.functional.one_hot(x, V).float(), state)
            return self.head(out), state
    return CharModel()


def torch_evaluate(torch, model, ids, V, chunk=1024):
    """Mean nats/char of ids[1:], one stream, state carried (as micrornn.train.evaluate)."""
    model.eval()
    total, state, n = 0.0, None, len(ids) - 1
    with torch.no_grad():
        for s in range(0, n, chunk):
            x = torch.from_numpy(ids[s:min(s + chunk, n)].reshape(-1, 1))
            y = torch.from_numpy(ids[s + 1:min(s + chunk, n) + 1].reshape(-1))
            logits, state = model(x, state)
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, V), y, reduction="sum").item()
    model.train()
    return total / n


def run_torch(args, vocab, train_ids, val_ids):
    """Train the PyTorch model for args.seconds; return a result dict."""
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed (pip install torch): this benchmark needs it")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    V, start, cpu = len(vocab), time.perf_counter(), time.process_time()
    model = torch_model(torch, args, V)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    stream = BatchStream(train_ids, args.batch_size, args.seq_len)
    torch_evaluate(torch, model, val_ids[:201], V)  # the first call pays PyTorch's one-time set-up
    t0 = time.perf_counter()
    torch_evaluate(torch, model, val_ids[:4001], V)
    reserve = 1.25 * (time.perf_counter() - t0) * len(val_ids) / 4000
    budget, state, step, train_time = Budget(args.seconds), None, 0, 0.0
    while step < args.steps and not budget.exhausted(time.perf_counter() - start, reserve):
        t0 = time.perf_counter()
        k = stream.position
        x, y = next(stream)
        if k % stream.steps_per_epoch == 0:
            state = None
        if state is not None:
            numpy_state = tuple(s.numpy() for s in state) if isinstance(state, tuple) else state.numpy()
            numpy_state = reset_some_streams(numpy_state, args.state_reset, args.seed, step)
            state = (tuple(torch.from_numpy(s) for s in numpy_state) if isinstance(numpy_state, tuple)
                     else torch.from_numpy(numpy_state))
        progress = max(step / args.steps, budget.fraction(time.perf_counter() - start, reserve))
        for group in opt.param_groups:
            group["lr"] = learning_rate(args.lr, step, progress, args.warmup)
        logits, state = model(torch.from_numpy(x), state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        step += 1
        train_time += time.perf_counter() - t0
    val = torch_evaluate(torch, model, val_ids, V)
    params = sum(p.numel() for p in model.parameters())
    return dict(side=f"PyTorch {torch.__version__}, {args.threads} threads", params=params, steps=step, val=val,
                seconds=time.perf_counter() - start, cpu=time.process_time() - cpu,
                chars_per_sec=step * args.seq_len * args.batch_size / max(train_time, 1e-9))


def run_micrornn(args, text):
    """Train micrornn's Trainer with the same recipe and budget; return a result dict."""
    config = TrainConfig(cell=args.cell, hidden_size=args.hidden_size, num_layers=args.layers, seq_len=args.seq_len,
                         batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, clip=args.clip,
                         dropout=args.dropout, state_reset=args.state_reset, time_budget=args.seconds,
                         steps=args.steps, fused=True, seed=args.seed, val_every=0, sample_every=0)
    start, cpu = time.perf_counter(), time.process_time()
    with blas_threads(args.micrornn_threads):
        trainer = Trainer(text, config)
        result = trainer.run(progress=False, log=lambda s: None)
    return dict(side=f"micrornn (fused, {args.micrornn_threads} BLAS thread)", params=trainer.model.num_parameters(),
                steps=result.step, val=result.val_loss, seconds=time.perf_counter() - start,
                cpu=time.process_time() - cpu,
                chars_per_sec=result.chars_per_sec)


def main():
    args = options()
    text = load_bundled_corpus()
    vocab = Vocab(text)
    train_ids, val_ids = train_val_split(vocab.encode(text), 0.1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.layers}x{args.hidden_size} {args.cell}, seq {args.seq_len} x batch {args.batch_size}, Adam "
          f"{args.lr:g}, warm-up {args.warmup}, clip {args.clip:g}, dropout {args.dropout:g}, state reset "
          f"{args.state_reset:g}; {args.seconds:g} s each; load average {load:.2f} at start", flush=True)
    results = []
    if args.only != "micrornn":
        results.append(run_torch(args, vocab, train_ids, val_ids))
        print(_row(results[-1]), flush=True)
    if args.only != "torch":
        results.append(run_micrornn(args, text))
        print(_row(results[-1]), flush=True)
    if len(results) == 2:
        t, m = results
        ratio = m["chars_per_sec"] / t["chars_per_sec"] if t["chars_per_sec"] else float("nan")
        print(f"micrornn - PyTorch: {m['val'] - t['val']:+.3f} nats/char; chars/s ratio {ratio:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


def _row(r):
    return (f"{r['side']}: {r['params']:,} parameters, {r['steps']} steps, {r['seconds']:.0f} s "
            f"({r['cpu']:.0f} s of CPU), "
            f"{r['chars_per_sec']:,.0f} chars/s, validation {r['val']:.4f} nats/char "
            f"({bits_per_char(r['val']):.4f} bits/char)")


if __name__ == "__main__":
    main()
