"""Regenerate every number and picture in README.md and docs/ with one command (from a source checkout):

    python docs/regenerate.py              # the fast parts, about a minute
    python docs/regenerate.py --slow       # also the measurements: benchmarks and training runs (hours)
    python docs/regenerate.py --only bench # one generated block (see --list)
    python docs/regenerate.py --list

It rewrites three kinds of text:

- the ```text block right after a ```python block: what that code prints. The blocks of a page run
  in order in one namespace, in a temporary folder (tests/test_docs_blocks.py runs them the same way
  and fails when a page shows other output than its code prints);
- each region between `<!-- generated: NAME -->` and `<!-- end generated -->`: the output of the
  command that JOBS names, followed by the machine and the date it was measured on. Regions whose
  job is deterministic are checked by the tests as well; timings are measured only here;
- the pictures and the executed tutorial notebook (`python -m micrornn.viz.docs`, the one source
  of docs/*.png, docs/src/ and docs/bptt_stepper.html).

Run it on a quiet machine: the slow jobs measure speed.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```\n(?:\n*^```text\n(.*?)^```\n)?", re.S | re.M)
REGION = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)
STAMP = re.compile(r"^<small>Measured .*</small>\n", re.M)


NUMBER = re.compile(r"([-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)")


def same_output(printed: str, shown: str, rtol: float = 1e-6, atol: float = 1e-12) -> bool:
    """True when two outputs have the same text and the same numbers up to round-off: the last digits
    of a float64 result (1.73e-17 against 6.94e-18, a sum's last place) depend on the BLAS and the CPU."""
    a, b = NUMBER.split(printed), NUMBER.split(shown)
    if len(a) != len(b):
        return False
    for i, (x, y) in enumerate(zip(a, b)):
        if i % 2 == 0 and x != y:
            return False
        if i % 2 == 1 and abs(float(x) - float(y)) > atol + rtol * abs(float(y)):
            return False
    return True


def pages() -> list[Path]:
    """README.md and every docs/*.md page."""
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


# ---- the output of each python block ------------------------------------------------------------

@dataclass
class Block:
    """One ```python block of a page, the output block after it (None if none), and what it printed."""
    code: str
    shown: str | None
    printed: str | None = None   # None when skipped (needs torch and torch is missing)


def needs_missing_module(code: str) -> str | None:
    """The optional module a block imports that is not installed here (torch), else None."""
    for name in ("torch", "jax"):
        if re.search(rf"^\s*import {name}\b|^\s*from {name}\b", code, re.M) and importlib.util.find_spec(name) is None:
            return name
    return None


def run_blocks(page: Path) -> list[Block]:
    """Run the page's python blocks in order in one namespace, in a temporary folder; keep what each prints."""
    from micrornn.engine import ops
    blocks = [Block(m.group(1), m.group(2)) for m in PYTHON_BLOCK.finditer(page.read_text(encoding="utf-8"))]
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    before, cwd = dict(ops.PRIMITIVES), os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            for block in blocks:
                if needs_missing_module(block.code):
                    continue
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(compile(block.code, str(page), "exec"), namespace)
                block.printed = out.getvalue()
        finally:  # a page may register a primitive of its own; other pages walk the table
            os.chdir(cwd)
            ops.PRIMITIVES.clear()
            ops.PRIMITIVES.update(before)
    return blocks


def write_block_outputs(page: Path) -> bool:
    """Rewrite the output block after each python block with what it printed; True if the page changed."""
    printed = iter(run_blocks(page))
    text = page.read_text(encoding="utf-8")

    def replace(m: re.Match) -> str:
        block = next(printed)
        if m.group(2) is None or block.printed is None:
            return m.group(0)
        return f"```python\n{m.group(1)}```\n\n```text\n{block.printed}```\n"
    new = PYTHON_BLOCK.sub(replace, text)
    page.write_text(new, encoding="utf-8")
    return new != text


# ---- generated regions: the output of a command, stamped ----------------------------------------

def machine() -> str:
    """One line naming the machine: CPU, cores, OS, Python, NumPy and its BLAS."""
    import numpy as np
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0] if names else cpu
    blas = ""
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
                         if i.get("user_api") == "blas")
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}{', ' + blas if blas else ''}")


def stamp() -> str:
    """The line under a generated region: machine and date."""
    load = f", load {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    return f"<small>Measured {datetime.date.today().isoformat()} on {machine()}{load}.</small>\n"


def _program(command: list[str]) -> tuple[list[str], dict]:
    """The argv and environment that run `command` ("micrornn ..." and "python ..." with this checkout first)."""
    program = [sys.executable, "-m", "micrornn", *command[1:]] if command[0] == "micrornn" else \
        [sys.executable, *command[1:]] if command[0] == "python" else command
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               COLUMNS="200")
    return program, env


def _transcript(command, shown, ok, returncode, stdout, stderr, with_stderr) -> str:
    """`$ command` and its output; RuntimeError when it exited with a status not in `ok`."""
    if returncode not in ok:
        raise RuntimeError(f"{' '.join(command)} exited {returncode}:\n{stderr}")
    return f"$ {shown or ' '.join(command)}\n{stdout}{stderr if with_stderr else ''}"


def run(command: list[str], shown: str | None = None, ok=(0,), cwd: Path | None = None, stderr: bool = True) -> str:
    """`$ command` and its output (stdout, and stderr unless it is progress only), run from a temporary
    folder unless cwd is given."""
    program, env = _program(command)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(program, cwd=cwd or tmp, env=env, capture_output=True, text=True)
    return _transcript(command, shown, ok, done.returncode, done.stdout, done.stderr, stderr)


def run_together(commands: list[tuple[list[str], str]], cwd: Path) -> list[str]:
    """Run (command, shown) pairs at the same time, one process each (one core each on two cores), from cwd;
    their transcripts (stdout only) in the same order."""
    started = []
    for command, _ in commands:
        program, env = _program(command)
        started.append(subprocess.Popen(program, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))
    outputs = [process.communicate() for process in started]
    return [_transcript(command, shown, (0,), process.returncode, out, err, False)
            for (command, shown), process, (out, err) in zip(commands, started, outputs)]


def example(name: str, *args: str) -> list[str]:
    """The command line of examples/NAME.py."""
    return ["python", str(REPO / "examples" / f"{name}.py"), *args]


def text_block(*transcripts: str) -> str:
    """Transcripts as one ```text block (long paths to this checkout shortened to the repo's)."""
    body = "\n".join(t.rstrip("\n") for t in transcripts).replace(f"{REPO}/", "")
    return f"```text\n{body}\n```\n"


def default_training() -> str:
    """The README's first command's training run, its loss curve and a sample from its checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        first = run(["micrornn", "train", "--quiet"], cwd=Path(tmp))
        shutil.copy(Path(tmp) / "runs" / "char_rnn_loss.png", DOCS / "loss_curve.png")
        second = run(["micrornn", "sample", "--checkpoint", "runs/char_rnn.npz", "--prime", "MENENIUS:",
                      "--length", "400", "--temperature", "0.8", "--seed", "1"], cwd=Path(tmp))
    return text_block(first, second)


def quality(preset: str) -> Callable[[], str]:
    """The preset as a user runs it beside its PyTorch twin (same model kind, size, recipe and wall time,
    one core each, at the same time), then the preset's checkpoint scored by nanoGPT's windowed estimate
    too; its loss curve becomes docs/quality_<preset>_loss.png (and the best preset's sample is shown)."""
    def make() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = f"runs/{preset}.npz"
            trained, twin = run_together([
                (["micrornn", "train", "--preset", preset, "--quiet", "--checkpoint", checkpoint], ""),
                (["python", str(REPO / "benchmarks" / "torch_same_time.py"), "--preset", preset, "--only", "torch"],
                 f"python benchmarks/torch_same_time.py --preset {preset} --only torch")], cwd=Path(tmp))
            windows = run(["micrornn", "eval", "--checkpoint", checkpoint, "--protocol", "windows"], cwd=Path(tmp))
            shutil.copy(Path(tmp) / "runs" / f"{preset}_loss.png", DOCS / f"quality_{preset}_loss.png")
            sample = [run(["micrornn", "sample", "--checkpoint", checkpoint, "--prime", "ROMEO:", "--length", "500",
                           "--temperature", "0.8", "--seed", "1"], cwd=Path(tmp))] if preset == "best" else []
        return text_block(trained, twin, windows, *sample)
    return make


def gated_gradients_picture() -> None:
    """docs/gated_gradients_T100.png, drawn by the gated-gradients example."""
    with tempfile.TemporaryDirectory() as tmp:
        run(example("gated_gradients", "--out", str(Path(tmp) / "g.png")))
        shutil.copy(Path(tmp) / "g.png", DOCS / "gated_gradients_T100.png")


def headline() -> str:
    """The README's headline numbers, read from the generated regions of the docs pages."""
    regions = {name: body for page in pages() for _, name, body, _ in REGION.findall(page.read_text(encoding="utf-8"))}
    train = regions["train-default"]
    found = (re.search(r"done: ([\d,]+) steps.*?, ([\d.]+) s.*?validation ([\d.]+) nats/char \(([\d.]+) bits", train, re.S)
             or re.search(r"^\| ([\d,]+) \| ([\d.]+) s \| [\d,]+ \| ([\d.]+) \| ([\d.]+) \|$", train, re.M))
    steps, seconds, nats, bits = found.groups()
    check = re.search(r"worst \|auto-analytic\| (\S+), .*auto~numeric (\S+),", regions["gradcheck-lstm"]).groups()
    bench = regions["bench"]
    fused = {size: re.search(rf"^rnn\s+float64\s+{size}\s+(?:\S+\s+){{6}}(\S+)", bench, re.M).group(1)
             for size in ("small", "medium", "large")}
    return (f"| what | measured |\n|---|---|\n"
            f"| `micrornn train` (the defaults: 2x192 RNN on tinyshakespeare, {int(steps.replace(',', '')):,} steps) | "
            f"{nats} nats/char ({bits} bits/char) on the validation split, in {seconds} s |\n"
            f"| `micrornn gradcheck --cell lstm`: graph vs hand-derived BPTT | worst difference {check[0]} |\n"
            f"| the same against central differences | worst {check[1]} of the tolerance |\n"
            f"| one fused RNN training step against a hand-written NumPy step, float64 small/medium/large | "
            f"{fused['small']} / {fused['medium']} / {fused['large']} |\n")


QUALITY_TARGETS = {"rnn": 1.50, "lstm": 1.45, "gru": 1.45, "best": 1.40}
DEFAULT_TARGET = 1.60  # `micrornn train` with no options, under two minutes


def _figure(m, group=1, missing="-") -> str:
    """A regex group as a 3-decimal figure, or `missing`."""
    return f"{float(m.group(group)):.3f}" if m and m.group(group) else missing


def _summary_row(run: str, body: str, target: float) -> str:
    """One row of the quality summary from a generated region (a transcript or an older table of a run)."""
    ours = (re.search(r"validation ([\d.]+) nats/char \(", body)
            or re.search(r"^\| micrornn, `--preset \w+`.*\| ([\d.]+) \|$", body, re.M)
            or re.search(r"^\| [\d,]+ \| [\d.]+ s \| [\d,]+ \| ([\d.]+) \|", body, re.M))
    if ours is None:
        return f"| {run} | not measured | | | | | | <= {target:.2f} | |"
    windows = re.search(r"^val: ([\d.]+) nats/char", body, re.M)
    twin = (re.search(r"validation stream ([\d.]+) nats/char.*?windows \(.*?\) ([\d.]+) nats/char", body)
            or re.search(r"^\| PyTorch .*\| ([\d.]+) \|$()", body, re.M))
    steps = re.search(r"done: (\d+) steps|^\| micrornn, `--preset \w+`[^|]*\| ([\d,]+) \||^\| ([\d,]+) \|", body, re.M)
    load = re.search(r"load average at the end ([\d.]+)", body) or re.search(r"load ([\d.]+) at the end", body)
    nats = float(ours.group(1))
    count = f"{int(next(g for g in steps.groups() if g).replace(',', '')):,}" if steps else "-"
    beats = "-" if twin is None else ("yes" if nats < float(twin.group(1)) else "no")
    return (f"| {run} | **{nats:.3f}** | {_figure(windows)} | {count} | {load.group(1) if load else '-'} | "
            f"{_figure(twin, 1, 'not run')} | {_figure(twin, 2)} | <= {target:.2f}: "
            f"{'met' if nats <= target else 'missed'} | {beats} |")


def quality_summary() -> str:
    """One table of every preset's figures and the default run's, read from the generated regions."""
    regions = {name: body for page in pages() for _, name, body, _ in REGION.findall(page.read_text(encoding="utf-8"))}
    rows = ["| run | micrornn, one stream | micrornn, windows | steps | load at the end | PyTorch twin, one stream | "
            "twin, windows | target (one stream) | beats its twin |", "|---|---|---|---|---|---|---|---|---|"]
    rows += [_summary_row(f"`--preset {preset}`", regions.get(f"quality-{preset}", ""), target)
             for preset, target in QUALITY_TARGETS.items()]
    rows.append(_summary_row("`micrornn train` (the defaults)", regions.get("train-default", ""), DEFAULT_TARGET))
    return "\n".join(rows) + "\n"


@dataclass
class Job:
    """A generated region: how to make its text, whether it measures time (slow) and whether the
    tests can check it (deterministic output)."""
    make: Callable[[], str]
    slow: bool = False
    checked: bool = False
    picture: Callable[[], None] | None = None   # a picture in docs/ the same program draws


JOBS: dict[str, Job] = {
    "gradcheck-rnn": Job(lambda: text_block(run(["micrornn", "gradcheck"])), checked=True),
    "gradcheck-lstm": Job(lambda: text_block(run(["micrornn", "gradcheck", "--cell", "lstm"])), checked=True),
    "gradcheck-broken": Job(lambda: text_block(run(["micrornn", "gradcheck", "--cell", "gru", "--bidirectional",
                                                    "--layers", "1", "--break-gate", "n"], ok=(1,))), checked=True),
    "two-paths": Job(lambda: text_block(run(example("two_paths"), shown="python examples/two_paths.py")),
                     checked=True),
    "vanishing": Job(lambda: text_block(run(example("vanishing_gradients"),
                                            shown="python examples/vanishing_gradients.py")), checked=True),
    "gated": Job(lambda: text_block(run(example("gated_gradients"), shown="python examples/gated_gradients.py")),
                 checked=True, picture=gated_gradients_picture),
    "binary-addition": Job(lambda: text_block(run(example("binary_addition"),
                                                  shown="python examples/binary_addition.py"))),
    "custom-cell": Job(lambda: text_block(run(example("custom_cell"), shown="python examples/custom_cell.py"))),
    "sine-wave": Job(lambda: text_block(run(example("sine_wave"), shown="python examples/sine_wave.py"))),
    "hessian": Job(lambda: text_block(
        run(example("hessian_sharpness", "--lr", "0.5"), shown="python examples/hessian_sharpness.py --lr 0.5"),
        run(example("hessian_sharpness", "--lr", "2.0", "--cells", "lstm"),
            shown="python examples/hessian_sharpness.py --lr 2.0 --cells lstm")), slow=True),
    "rtrl": Job(lambda: text_block(run(example("rtrl_vs_bptt"), shown="python examples/rtrl_vs_bptt.py")),
                slow=True),
    "bench": Job(lambda: text_block(run(["micrornn", "bench", "--quick", "--clock", "cpu", "--cells",
                                         "rnn,lstm,gru,mgu"], stderr=False)), slow=True),  # stderr: progress
    "scalar": Job(lambda: text_block(run(["python", str(REPO / "benchmarks" / "scalar_throughput.py")],
                                         shown="python benchmarks/scalar_throughput.py")), slow=True),
    "train-default": Job(default_training, slow=True),
    "quality-rnn": Job(quality("rnn"), slow=True),
    "quality-lstm": Job(quality("lstm"), slow=True),
    "quality-gru": Job(quality("gru"), slow=True),
    "quality-best": Job(quality("best"), slow=True),
    "ngram": Job(lambda: text_block(run(["python", str(REPO / "benchmarks" / "ngram_baseline.py"), "--orders", "5",
                                         "6", "7", "8"], shown="python benchmarks/ngram_baseline.py --orders 5 6 7 8")),
                 slow=True),
    "quality-summary": Job(quality_summary, checked=True),  # after the quality-* regions it reads
    "headline": Job(headline, checked=True),   # last: it reads the regions above
}


def regions() -> dict[str, tuple[Path, str]]:
    """{job name: (page, the region's text without its stamp)} for every generated region in the pages."""
    found = {}
    for page in pages():
        for _, name, body, _ in REGION.findall(page.read_text(encoding="utf-8")):
            found[name] = (page, STAMP.sub("", body))
    return found


def write_region(name: str) -> bool:
    """Run one job and write its text and stamp into its region; True if found."""
    made = None
    for page in pages():
        text = page.read_text(encoding="utf-8")
        if f"<!-- generated: {name} -->" not in text:
            continue
        made = made if made is not None else JOBS[name].make() + ("" if JOBS[name].checked else stamp())
        new = REGION.sub(lambda m, made=made: m.group(0) if m.group(2) != name else
                         f"{m.group(1)}{made}{m.group(4)}", text)
        page.write_text(new, encoding="utf-8")
    if made is not None and JOBS[name].picture is not None:
        JOBS[name].picture()
    return made is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="also run the measurements (benchmarks, training: hours)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these generated regions (see --list)")
    parser.add_argument("--list", action="store_true", help="list the generated regions and exit")
    parser.add_argument("--no-pictures", action="store_true", help="leave the pictures and the notebook alone")
    args = parser.parse_args(argv)
    if args.list:
        for name, job in JOBS.items():
            print(f"{name:18} {'slow' if job.slow else 'fast'}{', checked by the tests' if job.checked else ''}")
        return 0
    unknown = sorted(set(args.only or ()) - set(JOBS))
    if unknown:
        parser.error(f"unknown region(s) {', '.join(unknown)}; --list shows them")
    names = args.only or [n for n, job in JOBS.items() if args.slow or not job.slow]
    for name in names:
        start = time.perf_counter()
        found = write_region(name)
        print(f"{name}: {'written' if found else 'no region in the pages'} ({time.perf_counter() - start:.1f} s)")
    if not args.only:
        for page in pages():
            print(f"{page.relative_to(REPO)}: code output {'rewritten' if write_block_outputs(page) else 'unchanged'}")
        if not args.no_pictures:
            from micrornn.viz import docs as pictures
            pictures.regenerate(DOCS, skip_training=True)   # the loss curve comes from train-default
    return 0


if __name__ == "__main__":
    sys.exit(main())
