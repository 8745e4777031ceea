"""`micrornn gradcheck`: autograd vs analytic BPTT vs central differences on a random SequenceModel."""
from __future__ import annotations


from micrornn import rnncheck
from micrornn.limits import TooBig, check_fits, rnn_run_bytes
from micrornn.cli import UsageError, non_negative_float, non_negative_int, positive_float, positive_int


def add_parser(subparsers):
    """Register the `gradcheck` sub-command."""
    p = subparsers.add_parser(
        "gradcheck", help="check RNN gradients three ways (autograd, analytic BPTT, finite differences)",
        description="Build a random float64 SequenceModel and data, then compare for every parameter the "
                    "autograd gradient, the hand-derived BPTT gradient and central finite differences.")
    p.add_argument("--layers", type=positive_int, default=2, help="stacked RNN layers (default 2)")
    p.add_argument("--input-size", type=positive_int, default=3, help="input features (default 3)")
    p.add_argument("--hidden-size", type=positive_int, default=4, help="hidden units (default 4)")
    p.add_argument("--output-size", type=positive_int, default=5, help="output classes (default 5)")
    p.add_argument("--steps", type=positive_int, default=6, help="sequence length T (default 6)")
    p.add_argument("--batch", type=positive_int, default=2, help="batch size (default 2)")
    p.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh", help="default tanh")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--fused", action="store_true", help="autograd through the fused rnn_layer primitive")
    p.add_argument("--h0", action="store_true", help="start from a random initial state instead of zeros")
    p.add_argument("--eps", type=positive_float, default=1e-6, help="finite-difference step (default 1e-6)")
    p.add_argument("--atol", type=non_negative_float, default=1e-5, help="absolute tolerance vs numeric (1e-5)")
    p.add_argument("--rtol", type=non_negative_float, default=1e-3, help="relative tolerance vs numeric (1e-3)")
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


def run(args) -> int:
    """Print the comparison table and a summary; 0 when every parameter passes, else 1."""
    if args.atol == 0 and args.rtol == 0:
        raise UsageError("gradcheck: --atol and --rtol cannot both be 0")
    check_sizes(args, {"input_size": 3, "hidden_size": 4, "output_size": 5, "layers": 2, "steps": 6, "batch": 2})
    model, x, targets, h0 = rnncheck.random_problem(
        args.layers, args.input_size, args.hidden_size, args.output_size, args.steps, args.batch,
        args.nonlinearity, args.seed, args.fused, args.h0)
    route = "fused" if args.fused else "unrolled"
    print(f"gradcheck: SequenceModel(input={args.input_size}, hidden={args.hidden_size}, "
          f"output={args.output_size}, layers={args.layers}, {args.nonlinearity}, {route}), "
          f"T={args.steps}, batch={args.batch}, h0={'random' if args.h0 else 'zeros'}, seed={args.seed}, "
          f"float64, eps={args.eps:g}")
    rows = rnncheck.compare(model, x, targets, h0, eps=args.eps, atol=args.atol, rtol=args.rtol)
    print(rnncheck.format_table(rows, args.atol, args.rtol))
    print(rnncheck.summary(rows))
    return 0 if all(r.passed for r in rows) else 1
