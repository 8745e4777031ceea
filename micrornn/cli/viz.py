"""`micrornn viz`: draw a small RNN — its graph, the unrolled or folded network, and the gradient flow."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from micrornn.cli import UsageError
from micrornn.cli.gradcheck import check_sizes

DEFAULT_MAX_STEPS = 8  # longer sequences are collapsed unless --all-steps
HTML_MAX_STEPS = 10   # the stepper shows every node's numbers: keep the network small
SIZES = {"picture": {"input_size": 4, "hidden_size": 8, "output_size": 4},
         "html": {"input_size": 2, "hidden_size": 3, "output_size": 3}}


def add_parser(subparsers):
    """Register the `viz` sub-command."""
    p = subparsers.add_parser(
        "viz", help="draw an RNN's graph, its unrolled/folded picture, and the gradient flow",
        description="Build a small SequenceModel, run it on random data (and its backward with --grad) "
                    "and draw it. .dot needs nothing else; .svg/.png/.pdf need the Graphviz 'dot' program.")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="picture to write: .svg, .png, .pdf or .dot (optional with --plot, --gates or --jacobian)")
    p.add_argument("--html", metavar="FILE.html", default=None,
                   help="write the backprop stepper: one self-contained page that steps the forward and "
                        f"backward pass node by node (at most {HTML_MAX_STEPS} steps; default sizes "
                        "input 2, hidden 3, output 3)")
    p.add_argument("--view", choices=("graph", "unrolled", "folded"), default="graph",
                   help="graph: the autodiff graph grouped by layer and step; unrolled: the textbook picture; "
                        "folded: one cell with its loop (default graph)")
    p.add_argument("--steps", type=int, default=3, metavar="T", help="sequence length (default 3)")
    p.add_argument("--layers", type=int, default=1, metavar="L", help="stacked RNN layers (default 1)")
    p.add_argument("--input-size", type=int, default=None, metavar="I", help="input features (default 4; 2 with --html)")
    p.add_argument("--hidden-size", type=int, default=None, metavar="H", help="hidden units (default 8; 3 with --html)")
    p.add_argument("--output-size", type=int, default=None, metavar="O", help="output classes (default 4; 3 with --html)")
    p.add_argument("--batch-size", type=int, default=1, metavar="B", help="batch size (default 1)")
    p.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn",
                   help="recurrent cell (default rnn); the LSTM's cell state c_t is drawn as its own row")
    p.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh",
                   help="activation of the rnn cell (default tanh)")
    p.add_argument("--fused", action="store_true", help="graph view: one rnn_layer node per layer")
    p.add_argument("--grad", action="store_true", help="run backward and show ||dL/dh_t|| on each state")
    p.add_argument("--loss", choices=("sum", "last"), default="sum",
                   help="back-propagate L = sum_t L_t (default) or only the last step's L_T")
    p.add_argument("--w-scale", type=float, default=1.0, metavar="F",
                   help="multiply every recurrent weight W by F (>1 tends to explode, <1 to vanish)")
    p.add_argument("--max-steps", type=int, default=None, metavar="K",
                   help=f"draw only the first and last few of K steps and collapse the middle "
                        f"(default {DEFAULT_MAX_STEPS}: longer sequences are collapsed)")
    p.add_argument("--all-steps", action="store_true",
                   help="draw every step, however many (slow to lay out: 2 layers x 100 steps take minutes)")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also plot ||dL/dh_t|| per step and layer (needs matplotlib)")
    p.add_argument("--gates", metavar="FILE.png", default=None,
                   help="also plot gate activity and saturation over time (--cell lstm or gru; needs matplotlib)")
    p.add_argument("--jacobian", metavar="FILE.png", default=None,
                   help="also plot ||dh_T/dh_t||, ||dL/dh_t|| and the singular values of W (needs matplotlib)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    return p


def _check(args) -> None:
    """One-line UsageErrors for options argparse cannot check."""
    from micrornn.viz import output_format

    mode = "html" if args.html is not None else "picture"
    for flag, default in SIZES[mode].items():
        if getattr(args, flag) is None:
            setattr(args, flag, default)
    if args.cell != "rnn" and args.nonlinearity != "tanh":
        raise UsageError(f"--nonlinearity applies to --cell rnn only; the {args.cell.upper()} has fixed gates")
    for flag in ("steps", "layers", "input_size", "hidden_size", "output_size", "batch_size"):
        value = getattr(args, flag)
        if value <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
    check_sizes(argparse.Namespace(**{("batch" if k == "batch_size" else k): getattr(args, k) for k in
                                      ("input_size", "hidden_size", "output_size", "layers", "steps", "batch_size")}),
                {"input_size": 4, "hidden_size": 8, "output_size": 4, "layers": 1, "steps": 3, "batch": 1},
                {"batch": "--batch-size"})
    if args.max_steps is not None and args.max_steps <= 0:
        raise UsageError(f"--max-steps must be a positive integer, got {args.max_steps}")
    if not np.isfinite(args.w_scale):
        raise UsageError(f"--w-scale must be a finite number, got {args.w_scale}")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {args.seed}")
    if mode == "html":
        _check_html(args)
        return
    plots = [args.plot, args.gates, args.jacobian]
    if args.output is None and not any(plots):
        raise UsageError("-o FILE (a picture), --plot/--gates/--jacobian FILE.png (a plot) or --html FILE "
                         "(the stepper page) is required")
    if args.output is not None:
        try:
            output_format(args.output)
        except ValueError as err:
            raise UsageError(f"-o: {err}") from None
    for flag in ("plot", "gates", "jacobian"):
        path = getattr(args, flag)
        if path is not None and Path(path).suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UsageError(f"--{flag}: cannot write {path!r}: use a .png, .svg or .pdf file")
    if args.gates is not None and args.cell == "rnn":
        raise UsageError("--gates plots the gates of an LSTM or GRU; add --cell lstm or --cell gru")
    if args.fused and (args.grad or args.plot or args.jacobian):
        raise UsageError("--fused has no per-step states to annotate; drop --fused to use --grad, --plot or --jacobian")
    if args.all_steps and args.max_steps is not None:
        raise UsageError("--all-steps and --max-steps contradict each other; give one of them")
    if args.grad and args.view == "folded":
        raise UsageError("--grad shows ||dL/dh_t|| per time step, which the folded view does not have; "
                         "use --view unrolled or --view graph")
    named = {}
    for flag, path in (("-o", args.output), ("--plot", args.plot), ("--gates", args.gates), ("--jacobian", args.jacobian)):
        if path is not None:
            other = named.setdefault(Path(path).resolve(), flag)
            if other != flag:
                raise UsageError(f"{other} and {flag} both name {path!r}; one file would overwrite the other")
    for path in (args.output, args.plot, args.gates, args.jacobian):
        _check_not_a_directory(path)
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"cannot write {path!r}: directory {str(Path(path).parent)!r} does not exist")


def _check_html(args) -> None:
    """--html is a mode of its own: picture options do not apply to it."""
    picture_options = [flag for flag, given in (("-o", args.output), ("--plot", args.plot), ("--grad", args.grad),
                                                ("--fused", args.fused), ("--max-steps", args.max_steps),
                                                ("--all-steps", args.all_steps), ("--view", args.view != "graph"),
                                                ("--gates", args.gates), ("--jacobian", args.jacobian),
                                                ("--cell", args.cell != "rnn"))
                       if given]
    if picture_options:
        raise UsageError(f"--html writes the stepper page only; drop {', '.join(picture_options)} "
                         "(run micrornn viz again for a picture)")
    if Path(args.html).suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--html: cannot write {args.html!r}: use a .html file")
    if args.steps > HTML_MAX_STEPS:
        raise UsageError(f"--html shows every node's numbers, so --steps is at most {HTML_MAX_STEPS}, got {args.steps}")
    from micrornn.viz.html import STEPPER_LIMITS
    for name, limit in STEPPER_LIMITS.items():
        if getattr(args, name) > limit:
            raise UsageError(f"--html shows every node's numbers, so --{name.replace('_', '-')} is at most {limit}, "
                             f"got {getattr(args, name)}")
    if args.steps < 2:
        raise UsageError("--html needs --steps 2 or more: h_1 then has two gradient paths to show")
    _check_not_a_directory(args.html)
    if not Path(args.html).resolve().parent.is_dir():
        raise UsageError(f"cannot write {args.html!r}: directory {str(Path(args.html).parent)!r} does not exist")


def _check_not_a_directory(path) -> None:
    """UsageError when an output path names a directory or anything but a regular file."""
    if path is not None and Path(path).is_dir():
        raise UsageError(f"cannot write {path!r}: it is a directory")
    if path is not None and Path(path).exists() and not Path(path).is_file():
        raise UsageError(f"cannot write {path!r}: it exists and is not a regular file")


def _write_failed(path, err) -> int:
    """Report an output that could not be written (a full disk, a permission): one line, exit 1."""
    print(f"error: cannot write {path}: {err.strerror or err}; any previous file there is unchanged", file=sys.stderr)
    return 1


def _save_atomically(path, make) -> None:
    """make(temporary path with path's extension), then rename it over path: a failure keeps the old file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        make(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _model_and_data(args):
    """The SequenceModel and random (x, targets) the options describe."""
    from micrornn.nn import SequenceModel

    rng = np.random.default_rng(args.seed)
    model = SequenceModel(args.input_size, args.hidden_size, args.output_size, num_layers=args.layers,
                          nonlinearity=args.nonlinearity, fused=args.fused, rng=rng, cell=args.cell)
    for cell in model.rnn.cells:
        cell.W.data *= args.w_scale
    x = rng.standard_normal((args.steps, args.batch_size, args.input_size))
    targets = rng.integers(0, args.output_size, size=(args.steps, args.batch_size))
    return model, x, targets


def _run_html(args) -> int:
    """Write the stepper page."""
    from micrornn.viz import GraphvizNotFoundError, write_html

    model, x, targets = _model_and_data(args)
    try:
        path = write_html(args.html, model, x, targets)
    except GraphvizNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        return _write_failed(args.html, err)
    print(f"wrote {path} (backprop stepper: {args.steps} steps, {args.layers} layer(s), hidden {args.hidden_size}; "
          "open it in any browser, no server needed)")
    return 0


def run(args) -> int:
    """Build, run and draw the model (or write the stepper page); print what was written."""
    _check(args)
    if args.html is not None:
        return _run_html(args)
    from micrornn.viz import (GraphvizNotFoundError, draw_folded, draw_graph, draw_unrolled, gradient_flow,
                              graph_size, render)

    model, x, targets = _model_and_data(args)
    norms = None
    if args.grad or args.plot:
        loss, norms = gradient_flow(model, x, targets, loss=args.loss)
    else:
        loss, _ = model.loss(x, targets)

    if args.output is None:  # plots only: no graphviz picture asked for
        return _run_plots(args, model, x, targets, norms)
    max_steps = None if args.all_steps else (args.max_steps or DEFAULT_MAX_STEPS)
    if max_steps is not None and args.steps > max_steps and args.view != "folded" and not args.fused:
        print(f"note: drawing the first {math.ceil(max_steps / 2)} and last {max_steps // 2} of {args.steps} steps; "
              "--all-steps draws them all (slow to lay out)", file=sys.stderr)
    if args.view == "graph":
        graph = draw_graph(loss, names=model, show_grad=args.grad, max_steps=max_steps)
    elif args.view == "unrolled":
        graph = draw_unrolled(model, args.steps, max_steps=max_steps, hidden_grads=norms if args.grad else None,
                              loss=args.loss)
    else:
        graph = draw_folded(model)
    nodes, edges = graph_size(graph)
    start = time.perf_counter()
    try:
        render(graph, args.output)
    except GraphvizNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        return _write_failed(args.output, err)
    print(f"wrote {args.output} ({args.view} view, {nodes} nodes, {edges} edges, "
          f"rendered in {time.perf_counter() - start:.2f} s)")
    return _run_plots(args, model, x, targets, norms)


def _run_plots(args, model, x, targets, norms) -> int:
    """The matplotlib plots asked for: gradient flow, gate activity, the Jacobian view."""
    from micrornn.viz import gate_activity, jacobian_view, plot_gate_activity, plot_gradient_flow, plot_jacobian_view

    name = args.cell if args.cell != "rnn" else args.nonlinearity
    jobs = []
    if args.plot:
        jobs.append((args.plot, lambda out: plot_gradient_flow(
            norms, out, title=f"gradient flow: {name}, T={args.steps}, loss={args.loss}"),
            f"gradient flow over {args.steps} steps, {args.layers} layer(s)"))
    if args.gates:
        jobs.append((args.gates, lambda out: plot_gate_activity(gate_activity(model, x), out),
                     f"{args.cell} gate activity over {args.steps} steps"))
    if args.jacobian:
        jobs.append((args.jacobian, lambda out: plot_jacobian_view(jacobian_view(model, x, targets, loss=args.loss),
                                                                   out),
                     "||dh_T/dh_t||, ||dL/dh_t|| and the singular values of W, top layer"))
    for path, make, what in jobs:
        try:
            _save_atomically(path, make)
        except ImportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except OSError as err:
            return _write_failed(path, err)
        print(f"wrote {path} ({what})")
    return 0
