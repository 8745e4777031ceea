"""micrornn against a PyTorch model of the same kind and size, trained for the same wall time.

    python benchmarks/torch_same_time.py --cell rnn --hidden-size 256 --seconds 120
    python benchmarks/torch_same_time.py --preset lstm            # the preset's model and budget
    python benchmarks/torch_same_time.py --only torch --threads 2 --cell gru --seconds 900

Both sides train on micrornn's bundled tinyshakespeare with the standard split, read the same
(seq_len, batch) chunks of the same contiguous streams, start from one-hot inputs (the same
parameter count: PyTorch's recurrent-side biases that only add to its input-side ones are held at 0),
and use the same recipe, field by field of TrainConfig: Adam (AdamW with decoupled
weight decay on the weight matrices only when weight_decay > 0), linear warm-up then cosine decay
driven by the larger of steps and wall time, global gradient-norm clipping, occasional state resets,
float32, the forget/update-gate bias init (gate_bias), dropout between layers, on the input
characters (input_dropout: a whole one-hot row) and on the top layer's outputs (output_dropout),
with locked_dropout each mask drawn once per chunk and sequence and shared by its time steps (never
on the recurrent state), and an exponential moving average of the weights (ema) used for evaluation.
Each stops when its wall-clock budget (final evaluation included) is used up, and is scored twice:
the whole validation split as one stream with the hidden state carried, and nanoGPT's estimate,
random windows of --window characters from a zero state (the same windows for both sides; this
second figure is computed after the budget). The two runs take turns in one process (PyTorch
first), so they see the same machine, and the script prints each one's steps, characters per second
and validation nats and bits per character. It needs PyTorch (never a micrornn dependency) and says
so if it is missing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields

from micrornn.train.data import BatchStream, Vocab, load_bundled_corpus, train_val_split
from micrornn.train.threads import blas_threads
from micrornn.train import TrainConfig, Trainer, bits_per_char, windowed_loss
from micrornn.train.config import PRESETS, preset_config
from micrornn.train.carried_state import reset_some_streams
from micrornn.train.schedule import learning_rate
from micrornn.train.stopping import Budget
from micrornn.train.windows import window_starts

# Recipe fields another part of micrornn may add to TrainConfig: read with getattr(config, name, default).
DROPOUT_FIELDS = {"input_dropout": 0.0, "output_dropout": 0.0, "locked_dropout": False}


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
    ap.add_argument("--input-dropout", type=float, default=0.0)
    ap.add_argument("--output-dropout", type=float, default=0.0)
    ap.add_argument("--locked-dropout", action="store_true")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's decay of the weight matrices (0: Adam)")
    ap.add_argument("--gate-bias", type=float, default=0.0, help="lstm forget / gru update gate bias at creation")
    ap.add_argument("--ema", type=float, default=0.0, help="decay of the weight average used for evaluation (0: off)")
    ap.add_argument("--state-reset", type=float, default=0.01)
    ap.add_argument("--seconds", type=float, help="wall-clock budget of each run, evaluation included (default 120, "
                                                  "or the preset's)")
    ap.add_argument("--steps", type=int, default=1_000_000, help="also stop (and end the cosine) at this step")
    ap.add_argument("--window", type=int, default=256, help="characters per window of the windowed estimate")
    ap.add_argument("--windows", type=int, default=2000, help="windows of the windowed estimate (0: skip it)")
    ap.add_argument("--threads", type=int, default=1,
                    help="PyTorch intra-op threads (default 1, as micrornn; on a busy 2-core machine 2 threads "
                         "measured over 100x slower: its OpenMP workers wait for cores)")
    ap.add_argument("--micrornn-threads", type=int, default=1, help="BLAS threads for micrornn (default 1, as "
                                                                     "`micrornn train`)")
    ap.add_argument("--only", choices=("torch", "micrornn"), help="run one side only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    given = [f"--{name.replace('_', '-')}" for name in RECIPE_OPTIONS if getattr(args, name) != ap.get_default(name)]
    if args.preset and given:
        ap.error(f"--preset {args.preset} sets the model and recipe; drop {', '.join(given)} (or leave out --preset)")
    return args


RECIPE_OPTIONS = ("cell", "hidden_size", "layers", "seq_len", "batch_size", "lr", "warmup", "clip", "dropout",
                  "input_dropout", "output_dropout", "locked_dropout", "weight_decay", "gate_bias", "ema",
                  "state_reset", "steps")


def check_twin_can_follow(config) -> None:
    """Exit with one line when the config asks for something the torch side does not build."""
    unsupported = [what for what, asked in (("layer_norm", getattr(config, "layer_norm", False)),
                                           (f"nonlinearity {config.nonlinearity}", config.nonlinearity != "tanh"),
                                           (f"dtype {config.dtype}", config.dtype != "float32"),
                                           (f"optimizer {config.optimizer}", config.optimizer not in ("adam", "adamw")),
                                           (f"cell {config.cell}", config.cell not in ("rnn", "lstm", "gru")))
                   if asked]
    if unsupported:
        sys.exit(f"the PyTorch twin does not follow {', '.join(unsupported)}: compare that run on micrornn alone "
                 "(--only micrornn)")


def run_config(args) -> TrainConfig:
    """The TrainConfig both sides follow: the preset's (--seconds overriding its budget), else the options."""
    common = dict(val_every=0, sample_every=0, fused=True, seed=args.seed)
    if args.preset:
        budget = {} if args.seconds is None else {"time_budget": args.seconds}
        return _validated(preset_config(args.preset, **common, **budget))
    known = {f.name for f in fields(TrainConfig)}
    extra = {name: getattr(args, name) for name in DROPOUT_FIELDS if getattr(args, name) != DROPOUT_FIELDS[name]}
    missing = sorted(set(extra) - known)
    if missing:
        sys.exit(f"this micrornn has no TrainConfig field {', '.join(missing)}")
    return _validated(TrainConfig(cell=args.cell, hidden_size=args.hidden_size, num_layers=args.layers, seq_len=args.seq_len,
                       batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, clip=args.clip,
                       dropout=args.dropout, state_reset=args.state_reset, steps=args.steps,
                       time_budget=120.0 if args.seconds is None else args.seconds,
                       optimizer="adamw" if args.weight_decay else "adam", weight_decay=args.weight_decay,
                       gate_bias=args.gate_bias, ema=args.ema, **extra, **common))


def _validated(config: TrainConfig) -> TrainConfig:
    """The config with its lr filled in; exit with status 2 and one line naming a nonsensical option."""
    try:
        return config.validated()
    except ValueError as e:
        print(f"torch_same_time.py: error: {e}", file=sys.stderr)
        sys.exit(2)


def recipe(config) -> dict:
    """Every recipe field the torch side follows, with the defaults of fields this TrainConfig lacks."""
    names = ("dropout", "weight_decay", "gate_bias", "ema", *DROPOUT_FIELDS)
    return {name: getattr(config, name, DROPOUT_FIELDS.get(name, 0.0)) for name in names}


def redundant_bias_rows(cell, H):
    """How many leading rows of PyTorch's bias_hh only add to bias_ih (all of them, except the GRU's b_hn,
    which the reset gate scales and micrornn keeps as its own b_hn)."""
    return 2 * H if cell == "gru" else (4 * H if cell == "lstm" else H)


def _frozen_rows(torch, rows):
    """A gradient hook that zeroes the first ``rows`` entries: those biases stay at 0, out of the clip norm and
    of Adam's updates."""
    def hook(grad):
        grad = grad.clone()
        grad[:rows] = 0
        return grad
    return hook


def torch_model(torch, config, V):
    """One-layer nn.RNN/LSTM/GRU modules run one at a time over one-hot inputs, and a linear head: the layout of
    micrornn's SequenceModel, with its dropouts (a mask (1, B, F) per chunk when locked) and gate-bias init."""
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[config.cell]
    r, H, L = recipe(config), config.hidden_size, config.num_layers

    def drop(x, p, training, locked, whole_rows=False):
        """Dropout of x (T, B, F) with survivors scaled by 1/(1-p): locked masks are (1, B, F) (a one-hot input:
        a character dropped from the chunk), else (T, B, 1) for whole input rows or (T, B, F)."""
        if not training or p == 0:
            return x
        T, B, F = x.shape
        shape = (1, B, F) if locked else (T, B, 1) if whole_rows else (T, B, F)
        return x * ((torch.rand(shape) >= p).to(x.dtype) / (1.0 - p))

    class CharModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([layer(V if l == 0 else H, H) for l in range(L)])
            self.head = torch.nn.Linear(H, V)
            for m in self.layers:  # micrornn's one bias b is PyTorch's b_ih + b_hh: b_hh is held at 0
                with torch.no_grad():
                    m.bias_hh_l0[:redundant_bias_rows(config.cell, H)] = 0.0
                    if r["gate_bias"]:  # lstm f / gru z: block 1 of b_ih
                        m.bias_ih_l0[H:2 * H] = r["gate_bias"]
                m.bias_hh_l0.register_hook(_frozen_rows(torch, redundant_bias_rows(config.cell, H)))

        def forward(self, x, state=None):
            locked, lstm = r["locked_dropout"], config.cell == "lstm"
            out = drop(torch.nn.functional.one_hot(x, V).float(), r["input_dropout"], self.training, locked,
                       whole_rows=True)
            finals = []
            for l, m in enumerate(self.layers):
                if l > 0:
                    out = drop(out, r["dropout"], self.training, locked)
                init = None if state is None else (state[0][l:l + 1], state[1][l:l + 1]) if lstm else state[l:l + 1]
                out, final = m(out, init)
                finals.append(final)
            new = (torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals])) if lstm else torch.cat(finals)
            return self.head(drop(out, r["output_dropout"], self.training, locked)), new
    return CharModel()


class TorchAverage:
    """avg = d_t * avg + (1 - d_t) * p after step t, d_t = min(d, (1 + t) / (10 + t)) as micrornn's WeightAverage;
    ``evaluate`` holds the averages in the model for a block."""

    def __init__(self, torch, model, decay):
        self.torch, self.params, self.decay = torch, list(model.parameters()), decay
        self.avg = [p.detach().clone() for p in self.params]

    def update(self, step):
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        with self.torch.no_grad():
            for a, p in zip(self.avg, self.params):
                a.mul_(d).add_(p, alpha=1.0 - d)

    def evaluate(self, fn):
        """fn() with the averaged weights in the model, the trained ones restored afterwards."""
        with self.torch.no_grad():
            trained = [p.detach().clone() for p in self.params]
            for a, p in zip(self.avg, self.params):
                p.copy_(a)
        try:
            return fn()
        finally:
            with self.torch.no_grad():
                for t, p in zip(trained, self.params):
                    p.copy_(t)


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


def torch_windowed(torch, model, ids, V, window, count, seed, batch=64):
    """nanoGPT's estimate on the torch model: the windows micrornn.train.windowed_loss draws for this seed."""
    starts, offsets, total = window_starts(len(ids), window, count, seed), torch.arange(window + 1), 0.0
    model.eval()
    with torch.no_grad():
        for b in range(0, count, batch):
            rows = torch.from_numpy(ids.astype("int64"))[torch.from_numpy(starts[b:b + batch])[:, None] + offsets].T
            logits, _ = model(rows[:-1])
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, V), rows[1:].reshape(-1),
                                                       reduction="sum").item()
    model.train()
    return total / (count * window)


def torch_optimizer(torch, model, config):
    """Adam, or AdamW decaying the weight matrices only (ndim >= 2) when weight_decay > 0."""
    wd = recipe(config)["weight_decay"]
    if not wd:
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": matrices, "weight_decay": wd}, {"params": others, "weight_decay": 0.0}],
                             lr=config.lr)


def run_torch(args, config, vocab, train_ids, val_ids):
    """Train the PyTorch model for config.time_budget seconds; return a result dict."""
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed (pip install torch): this benchmark needs it")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    V, start, cpu = len(vocab), time.perf_counter(), time.process_time()
    model = torch_model(torch, config, V)
    opt = torch_optimizer(torch, model, config)
    ema = TorchAverage(torch, model, recipe(config)["ema"]) if recipe(config)["ema"] else None
    scored = (lambda fn: ema.evaluate(fn)) if ema else (lambda fn: fn())
    stream = BatchStream(train_ids, config.batch_size, config.seq_len)
    torch_evaluate(torch, model, val_ids[:201], V)  # the first call pays PyTorch's one-time set-up
    t0 = time.perf_counter()
    torch_evaluate(torch, model, val_ids[:4001], V)
    reserve = 1.25 * (time.perf_counter() - t0) * len(val_ids) / 4000
    budget, state, step, train_time = Budget(config.time_budget), None, 0, 0.0
    while step < config.steps and not budget.exhausted(time.perf_counter() - start, reserve):
        t0 = time.perf_counter()
        k = stream.position
        x, y = next(stream)
        if k % stream.steps_per_epoch == 0:
            state = None
        if state is not None:
            numpy_state = tuple(s.numpy() for s in state) if isinstance(state, tuple) else state.numpy()
            numpy_state = reset_some_streams(numpy_state, config.state_reset, args.seed, step)
            state = (tuple(torch.from_numpy(s) for s in numpy_state) if isinstance(numpy_state, tuple)
                     else torch.from_numpy(numpy_state))
        progress = max(step / config.steps, budget.fraction(time.perf_counter() - start, reserve))
        for group in opt.param_groups:
            group["lr"] = learning_rate(config.lr, step, progress, config.warmup, config.lr_schedule)
        logits, state = model(torch.from_numpy(x), state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        if config.clip:  # 0: no clipping, as micrornn
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        if ema:
            ema.update(step + 1)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        step += 1
        train_time += time.perf_counter() - t0
    val = scored(lambda: torch_evaluate(torch, model, val_ids, V))
    seconds = time.perf_counter() - start
    windows = scored(lambda: torch_windowed(torch, model, val_ids, V, args.window, args.windows, args.seed)) \
        if args.windows else None
    params = sum(p.numel() for p in model.parameters()) - sum(  # the bias_hh rows held at 0 are not trained
        redundant_bias_rows(config.cell, config.hidden_size) for _ in model.layers)
    return dict(side=f"PyTorch {torch.__version__}, {args.threads} threads", params=params, steps=step, val=val,
                windows=windows, seconds=seconds, cpu=time.process_time() - cpu,
                chars_per_sec=step * config.seq_len * config.batch_size / max(train_time, 1e-9))


def run_micrornn(args, config, text, val_ids):
    """Train micrornn's Trainer with the same recipe and budget; return a result dict."""
    start, cpu = time.perf_counter(), time.process_time()
    with blas_threads(args.micrornn_threads):
        trainer = Trainer(text, config)
        result = trainer.run(progress=False, log=lambda s: None)
        seconds = time.perf_counter() - start
        windows = None
        if args.windows:
            with trainer.averaged():  # the EMA weights when config.ema is on, as every validation
                windows = windowed_loss(trainer.model, val_ids, args.window, args.windows, args.seed)
    return dict(side=f"micrornn (fused, {args.micrornn_threads} BLAS thread)", params=trainer.model.num_parameters(),
                steps=result.step, val=result.val_loss, windows=windows, seconds=seconds,
                cpu=time.process_time() - cpu, chars_per_sec=result.chars_per_sec)


def main():
    args = options()
    config = run_config(args)
    if args.only != "micrornn":
        check_twin_can_follow(config)
    text = load_bundled_corpus()
    vocab = Vocab(text)
    train_ids, val_ids = train_val_split(vocab.encode(text), config.val_fraction)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    r = recipe(config)
    print(f"{config.num_layers}x{config.hidden_size} {config.cell}, seq {config.seq_len} x batch {config.batch_size}, "
          f"{'AdamW' if r['weight_decay'] else 'Adam'} {config.lr:g}, warm-up {config.warmup}, clip {config.clip:g}, "
          f"state reset {config.state_reset:g}, " + ", ".join(f"{k} {v:g}" for k, v in r.items()) +
          f"; {config.time_budget:g} s each; load average {load:.2f} at start", flush=True)
    results = []
    if args.only != "micrornn":
        results.append(run_torch(args, config, vocab, train_ids, val_ids))
        print(_row(results[-1], args), flush=True)
    if args.only != "torch":
        results.append(run_micrornn(args, config, text, val_ids))
        print(_row(results[-1], args), flush=True)
    if len(results) == 2:
        t, m = results
        ratio = m["chars_per_sec"] / t["chars_per_sec"] if t["chars_per_sec"] else float("nan")
        windows = f", windows {m['windows'] - t['windows']:+.3f}" if args.windows else ""
        print(f"micrornn - PyTorch: stream {m['val'] - t['val']:+.3f} nats/char{windows}; chars/s ratio {ratio:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


def _row(r, args):
    windows = (f"; windows ({args.windows} x {args.window}, seed {args.seed}, from a zero state) {r['windows']:.4f} "
               f"nats/char" if r["windows"] is not None else "")
    return (f"{r['side']}: {r['params']:,} parameters, {r['steps']} steps, {r['seconds']:.0f} s "
            f"({r['cpu']:.0f} s of CPU), "
            f"{r['chars_per_sec']:,.0f} chars/s, validation stream {r['val']:.4f} nats/char "
            f"({bits_per_char(r['val']):.4f} bits/char){windows}")


if __name__ == "__main__":
    main()
