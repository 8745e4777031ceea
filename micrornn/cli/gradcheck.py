"""`micrornn gradcheck`: unrolled graph vs analytic BPTT vs fused primitives vs central differences
on a random SequenceModel of any cell kind."""
from __future__ import annotations

from contextlib import nullcontext

from micrornn.check import divergence

from micrornn.check import routes as rnncheck
from micrornn.nn.cells import CELLS
from micrornn.cli.cells import CELL_HELP, cell_argument, resolve_cell
from micrornn.train.limits import TooBig, check_fits, rnn_run_bytes
from micrornn.cli import UsageError, non_negative_float, non_negative_int, positive_float, positive_int


def add_parser(subparsers):
    """Register the `gradcheck` sub-command."""
    p = subparsers.add_parser(
        "gradcheck", help="check RNN/LSTM/GRU gradients four ways (graph, analytic BPTT, fused, finite differences)",
        description="Build a random float64 SequenceModel and data, then compare for every parameter the "
                    "autograd gradient through the unrolled graph, the hand-derived BPTT gradient, the autograd "
                    "gradient through the fused layer primitives and central finite differences. When a route "
                    "disagrees, also name the first time step (and gate) where the per-step hidden gradients "
                    "dL/dh_t (dL/dc_t) part ways.")
    p.add_argument("--cell", type=cell_argument, default="rnn", metavar="CELL",
                   help=f"{CELL_HELP} (default rnn); a user cell is checked graph against central differences")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional layers")
    p.add_argument("--layer-norm", action="store_true", help="layer-norm cells (--cell lstm or gru only)")
    p.add_argument("--batch-first", action="store_true", help="the model takes (B, T, I) inputs")
    p.add_argument("--layers", type=positive_int, default=2, help="stacked RNN layers (default 2)")
    p.add_argument("--input-size", type=positive_int, default=3, help="input features (default 3)")
    p.add_argument("--hidden-size", type=positive_int, default=4, help="hidden units (default 4)")
    p.add_argument("--output-size", type=positive_int, default=5, help="output classes (default 5)")
    p.add_argument("--steps", type=positive_int, default=6, help="sequence length T (default 6)")
    p.add_argument("--batch", type=positive_int, default=2, help="batch size (default 2)")
    p.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh", help="rnn cells only (default tanh)")
    p.add_argument("--no-bias", action="store_true", help="layers and head without bias")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--fused", action="store_true",
                   help="build the model with fused=True (every route, fused included, is checked either way)")
    p.add_argument("--h0", action="store_true", help="start from a random initial state instead of zeros")
    p.add_argument("--lengths", metavar="L1,L2,...",
                   help="pad the batch: one length per sequence (1..steps); steps past a length do not count")
    p.add_argument("--eps", type=positive_float, default=1e-6, help="finite-difference step (default 1e-6)")
    p.add_argument("--atol", type=non_negative_float, default=1e-5, help="absolute tolerance vs numeric (1e-5)")
    p.add_argument("--rtol", type=non_negative_float, default=1e-3, help="relative tolerance vs numeric (1e-3)")
    p.add_argument("--break-gate", metavar="GATE",
                   help="deliberately scale the analytic derivative of GATE by 1.5 ("
                        + ", ".join(f"{kind}: {' '.join(cls.blocks)}" for kind, cls in CELLS.items())
                        + ") to watch the check find it")
    return p


def check_sizes(args, defaults, flags=None) -> None:
    """UsageError naming the option (flags: name -> flag where it differs) when the model and its
    graph cannot fit in memory."""
    def estimate(input_size, hidden_size, output_size, layers, steps, batch):
        return rnn_run_bytes(input_size, hidden_size, output_size, layers, steps, batch, extra=0)
    sizes = {name: getattr(args, name) for name in defaults}
    try:
        check_fits(estimate, sizes, defaults)
    except TooBig as e:
        name = str(e).split(" ", 1)[0]
        flag = (flags or {}).get(name, f"--{name.replace('_', '-')}")
        raise UsageError(f"{flag}{str(e)[len(name):]}") from None


def _run_user_cell(args, cell, lengths) -> int:
    """A user cell has no analytic or fused route: its graph gradient against central differences."""
    refused = [flag for flag, on in (("--fused", args.fused), ("--h0", args.h0), ("--break-gate", args.break_gate),
                                     ("--nonlinearity", args.nonlinearity != "tanh"), ("--layer-norm", args.layer_norm))
               if on]
    if refused:
        raise UsageError(f"gradcheck: {', '.join(refused)} need a built-in cell ({', '.join(CELLS)}), not {args.cell}")
    try:
        model, x, targets, _ = rnncheck.random_problem(
            args.layers, args.input_size, args.hidden_size, args.output_size, args.steps, args.batch, seed=args.seed,
            cell=cell, bidirectional=args.bidirectional, batch_first=args.batch_first, bias=not args.no_bias)
        rows = rnncheck.compare_graph(model, x, targets, args.eps, args.atol, args.rtol, lengths)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--cell {args.cell}: {e}") from None
    print(f"gradcheck: SequenceModel(input={args.input_size}, hidden={args.hidden_size}, output={args.output_size}, "
          f"layers={args.layers}, cell {args.cell}), T={args.steps}, batch={args.batch}, seed={args.seed}, float64"
          + (f", lengths={','.join(map(str, lengths))}" if lengths is not None else ""))
    print("routes: graph = autograd through the unrolled graph, numeric = central differences (a user cell has no "
          f"analytic route); graph~numeric = worst |graph - numeric| / ({args.atol:g} + {args.rtol:g}*|numeric|)")
    width = max([len("parameter")] + [len(name) for name, _, _ in rows])
    print(f"{'parameter':<{width}}  {'shape':<9} {'graph~numeric':>13}  result")
    for name, shape, ratio in rows:
        print(f"{name:<{width}}  {'x'.join(map(str, shape)):<9} {ratio:>13.2e}  {'PASS' if ratio <= 1 else 'FAIL'}")
    failed = [name for name, _, ratio in rows if not ratio <= 1]
    worst = max(ratio for _, _, ratio in rows)
    print(f"FAIL: {len(failed)} of {len(rows)} parameters disagree ({', '.join(failed)}); worst graph~numeric {worst:.2e}"
          if failed else f"PASS: all {len(rows)} parameters agree; worst graph~numeric {worst:.2e}")
    return 1 if failed else 0


def _parse_lengths(text, batch, steps) -> list:
    """--lengths as ints, one per sequence in 1..steps (UsageError naming the option otherwise)."""
    try:
        lengths = [int(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--lengths: expected comma-separated integers, got {text!r}") from None
    if len(lengths) != batch or min(lengths) < 1 or max(lengths) > steps:
        raise UsageError(f"--lengths: expected {batch} lengths (one per sequence of --batch) in 1..{steps} "
                         f"(--steps), got {text!r}")
    return lengths


def run(args) -> int:
    """Print the comparison table and a summary; 0 when every parameter passes, else 1."""
    if args.atol == 0 and args.rtol == 0:
        raise UsageError("gradcheck: --atol and --rtol cannot both be 0")
    check_sizes(args, {"input_size": 3, "hidden_size": 4, "output_size": 5, "layers": 2, "steps": 6, "batch": 2})
    lengths = _parse_lengths(args.lengths, args.batch, args.steps) if args.lengths else None
    if args.cell not in CELLS:
        return _run_user_cell(args, resolve_cell(args.cell), lengths)
    if args.nonlinearity != "tanh" and args.cell != "rnn":
        raise UsageError(f"gradcheck: --nonlinearity applies to --cell rnn only, not {args.cell}")
    if args.layer_norm and args.cell not in ("lstm", "gru"):
        raise UsageError(f"gradcheck: --layer-norm needs --cell lstm or gru, not {args.cell}")
    if args.layer_norm and args.break_gate:
        raise UsageError("gradcheck: --break-gate breaks the plain cells' derivatives; drop it with --layer-norm")
    gates = CELLS[args.cell].blocks
    if args.break_gate is not None and args.break_gate not in gates:
        raise UsageError(f"gradcheck: --break-gate for {args.cell} must be one of {', '.join(gates)}, "
                         f"got {args.break_gate!r}")
    model, x, targets, h0 = rnncheck.random_problem(
        args.layers, args.input_size, args.hidden_size, args.output_size, args.steps, args.batch,
        args.nonlinearity, args.seed, args.fused, args.h0, cell=args.cell, bidirectional=args.bidirectional,
        batch_first=args.batch_first, bias=not args.no_bias, layer_norm=args.layer_norm)
    kind = args.nonlinearity if args.cell == "rnn" else args.cell
    extras = "".join(f", {flag}" for flag, on in (("layer norm", args.layer_norm), ("bidirectional", args.bidirectional),
                                                  ("batch_first", args.batch_first), ("no bias", args.no_bias)) if on)
    print(f"gradcheck: SequenceModel(input={args.input_size}, hidden={args.hidden_size}, "
          f"output={args.output_size}, layers={args.layers}, {kind}{extras}), "
          f"T={args.steps}, batch={args.batch}, h0={'random' if args.h0 else 'zeros'}, seed={args.seed}, "
          + (f"lengths={','.join(map(str, lengths))}, " if lengths is not None else "") +
          f"float64, eps={args.eps:g}")
    broken = divergence.wrong_derivative(args.cell, args.break_gate) if args.break_gate else nullcontext()
    with broken:
        if args.break_gate:
            print(f"(deliberately wrong: the analytic derivative of gate {args.break_gate} is scaled by 1.5)")
        rows = rnncheck.compare(model, x, targets, h0, eps=args.eps, atol=args.atol, rtol=args.rtol, lengths=lengths)
        print(rnncheck.format_table(rows, args.atol, args.rtol))
        passed = all(r.passed for r in rows)
        if not passed and lengths is not None:
            print("(the first-divergence search runs on full-length batches: run again without --lengths to locate it)")
        elif not passed:
            print(divergence.describe(divergence.first_divergence(model, x, targets, h0, args.eps, args.atol,
                                                                  args.rtol)))
    print(rnncheck.summary(rows))
    return 0 if passed else 1
