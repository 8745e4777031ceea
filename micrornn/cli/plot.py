"""`micrornn plot`: redraw the loss curves of a run from the JSONL log `micrornn train --log` wrote."""
from __future__ import annotations

from pathlib import Path

from micrornn.cli import UsageError

PLOT_FORMATS = (".png", ".pdf", ".svg")


def add_parser(subparsers):
    """Register the `plot` sub-command."""
    p = subparsers.add_parser("plot", help="redraw a run's loss curves from its --log file",
                              description="Read the JSONL metrics log of `micrornn train --log FILE` and draw the "
                                          "training loss per step and the validation losses (needs matplotlib).")
    p.add_argument("log", metavar="FILE.jsonl", help="the metrics log of a run")
    p.add_argument("-o", "--out", metavar="IMAGE", help="image to write, .png, .pdf or .svg (default: the log's "
                                                        "path with _loss.png)")
    p.add_argument("--title", default="micrornn: training run", help="title of the figure")
    return p


def run(args) -> int:
    """Read the log, draw the curves, say where they went."""
    from micrornn.train.metrics import read_log
    from micrornn.train.plots import plot_history
    log = Path(args.log)
    out = Path(args.out) if args.out else log.with_name(log.stem + "_loss.png")
    if out.suffix.lower() not in PLOT_FORMATS:
        raise UsageError(f"--out: {out} must end in one of {', '.join(PLOT_FORMATS)}")
    if out.resolve() == log.resolve():
        raise UsageError(f"--out {out} is the log itself; choose another file")
    try:
        history = read_log(log)
    except FileNotFoundError:
        raise UsageError(f"log not found: {log}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {log}: {e}") from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not history["step"] and not history["val_step"]:
        raise UsageError(f"{log} holds no training or validation records")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        plot_history(history, out, title=args.title)
    except ImportError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"loss curve: {out} ({len(history['step'])} training steps, {len(history['val_step'])} validations)")
    return 0
