"""TrainConfig: everything that defines a training run, its validation, and the named presets."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from micrornn.nn.cells import CELLS as CELL_REGISTRY, is_import_name
from micrornn.train.loop import OPTIMIZERS

LR_SCHEDULES = ("cosine", "constant")
GATE_BIAS_LIMIT = 100.0  # sigmoid(100) is 1 in float64: a larger initial gate bias is a mistake
CELLS = tuple(CELL_REGISTRY)  # the built-in cell kinds


def option(default, help: str, **cli):
    """A TrainConfig field with its command-line help beside it; ``cli`` may set ``flag`` (another option
    name), ``metavar``, ``choices``, ``low`` (an int's minimum) or ``kind`` ("probability", "positive")."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints; `micrornn train` options and
    --config TOML keys are generated from these fields)."""
    cell: str = option("rnn", "recurrent cell: one of rnn, lstm, gru, or your own cell class as "
                       "package.module:Class (imported only when named by the command line's --cell)")
    hidden_size: int = option(192, "hidden units per layer", metavar="N", low=1)
    num_layers: int = option(2, "stacked recurrent layers", flag="--layers", metavar="N", low=1)
    nonlinearity: str = option("tanh", "the vanilla cell's activation (gated cells have their own)",
                               choices=("tanh", "relu"))
    dropout: float = option(0.0, "dropout between stacked layers, training only", metavar="P", kind="probability")
    input_dropout: float = option(0.0, "embedding dropout: drop whole input characters (the one-hot row at each step "
                                  "of each stream; with --locked-dropout a character from the whole sequence) with "
                                  "probability P, training only", metavar="P", kind="probability")
    output_dropout: float = option(0.0, "dropout on the top layer's outputs before the linear head, training only",
                                   metavar="P", kind="probability")
    locked_dropout: bool = option(False, "variational dropout: each dropout mask (input, between layers, output) is "
                                  "drawn once per sequence and shared by all its time steps; the recurrent state is "
                                  "never dropped")
    layer_norm: bool = option(False, "layer-normalize each gate block of the lstm or gru cells, and the LSTM's cell "
                              "state before its tanh (Ba et al. 2016); not for rnn or user cells")
    seq_len: int = option(32, "BPTT truncation length", metavar="T", low=1)
    batch_size: int = option(48, "parallel streams", metavar="B", low=1)
    steps: int = option(4000, "train until this many steps in total, resumed steps included", metavar="N", low=0)
    optimizer: str = option("adam", "the optimizer; sgd uses momentum 0.9; adamw is adam with decoupled weight decay "
                            "(--weight-decay)", choices=tuple(sorted(OPTIMIZERS)))
    weight_decay: float = option(0.0, "adamw's decoupled weight decay: each step p -= lr * WD * p on the weight "
                                 "matrices only (never biases or gains); needs --optimizer adamw", metavar="WD")
    gate_bias: float = option(0.0, "at model creation set the lstm forget-gate / gru update-gate bias to B "
                              "(positive: the cells keep their state); lstm and gru only; write a negative value as "
                              "--gate-bias=-1.5", metavar="B", kind="real")
    ema: float = option(0.0, "keep an exponential moving average of the weights (avg = d*avg + (1-d)*p after "
                        "step t, d = min(D, (1+t)/(10+t))) for validation, samples and the checkpoint's model; 0 = off", metavar="D",
                        kind="probability")
    lr: float | None = option(None, "learning rate (default: adam and adamw 5e-3, adagrad 0.1, sgd 0.5)", metavar="LR",
                                kind="positive")
    lr_schedule: str = option("cosine", "cosine: decay the lr to 0 at the last step; constant: keep it",
                              choices=LR_SCHEDULES)
    warmup: int = option(100, "linear lr warm-up over this many first steps (0: none)", metavar="N", low=0)
    clip: float = option(5.0, "max global gradient norm, 0 = no clipping", metavar="NORM")
    state_reset: float = option(0.01, "each step, zero each stream's carried state with probability P", metavar="P",
                                kind="probability")
    time_budget: float = option(0.0, "stop training in time for the final validation to end within SECONDS of wall "
                                "time; the cosine decay follows the time used when it is ahead of the steps "
                                "(0: no limit)", metavar="SECONDS")
    seed: int = option(0, "random seed", metavar="N", low=0)
    fused: bool = option(True, "run each layer as one fused primitive whose VJP is the hand-written BPTT, or with "
                         "--no-fused as the unrolled graph (same model and loss, slower; a user cell always runs unrolled)")
    compile: bool = option(True, "with --no-fused: trace the unrolled step once with micrornn.compile and replay "
                           "it (same gradients, less Python per step), or run it on the engine each step with "
                           "--no-compile")
    dtype: str = option("float32", "parameter dtype", choices=("float32", "float64"))
    val_fraction: float = option(0.1, "the share of the text held out for validation, in (0, 1)", metavar="F",
                                 kind="positive")
    val_every: int = option(250, "validate every N steps, 0 = only at the end", metavar="N", low=0)
    val_chars: int = option(20000, "periodic validations score the first N characters of the validation split, "
                            "0 = all; the final one always scores all of it", metavar="N", low=0)
    patience: int = option(0, "early stopping: stop after N validations without a new best, 0 = never; each new "
                           "best is saved to <checkpoint>_best.npz", metavar="N", low=0)
    sample_every: int = option(500, "print a sample every N steps, 0 = never", metavar="N", low=0)
    sample_length: int = option(200, "characters per sample (the final sample is 2.5x longer)", metavar="N", low=0)
    sample_temperature: float = option(0.8, "sampling temperature, 0 = greedy", flag="--temperature", metavar="T")
    checkpoint_every: int = option(0, "also save every N steps, 0 = only at the end and on Ctrl-C", metavar="N",
                                   low=0)
    log_every: int = option(1, "with --log/--tensorboard: a training record every N steps", metavar="N", low=1)

    def validated(self) -> "TrainConfig":
        """A copy with lr filled in; ValueError naming the first nonsensical field."""
        for name in ("hidden_size", "num_layers", "seq_len", "batch_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("log_every", self.log_every, 1)
        for name in ("steps", "seed", "val_every", "sample_every", "sample_length", "checkpoint_every", "warmup",
                     "val_chars", "patience"):
            _check_int(name, getattr(self, name), 0)
        if self.cell not in CELLS and not is_import_name(self.cell):
            raise ValueError(f"cell must be one of {CELLS} or a user cell 'package.module:Class', got {self.cell!r}")
        if self.cell not in CELLS and self.nonlinearity != "tanh":
            raise ValueError(f"nonlinearity applies to cell 'rnn' only, not to {self.cell}")
        if _check_bool("layer_norm", self.layer_norm) and self.cell not in ("lstm", "gru"):
            raise ValueError(f"layer_norm needs cell lstm or gru (their gate blocks are normalized), got {self.cell!r}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        lr = OPTIMIZERS[self.optimizer][1] if self.lr is None else self.lr
        _check_float("lr", lr, positive=True)
        _check_float("clip", self.clip)
        _check_float("sample_temperature", self.sample_temperature)  # 0: greedy
        _check_float("time_budget", self.time_budget)
        for name in ("dropout", "input_dropout", "output_dropout", "state_reset"):
            value = getattr(self, name)
            _check_float(name, value)
            if value >= 1:
                raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
        _check_float("weight_decay", self.weight_decay)
        if lr * self.weight_decay >= 1:
            raise ValueError(f"weight_decay {self.weight_decay!r} with lr {lr!r}: each step multiplies the weights by "
                             f"1 - lr * weight_decay = {1 - lr * self.weight_decay:.3g}, which must stay above 0")
        if self.weight_decay and self.optimizer != "adamw":
            raise ValueError(f"weight_decay {self.weight_decay} needs optimizer adamw (decoupled decay), "
                             f"got optimizer {self.optimizer}")
        if isinstance(self.gate_bias, bool) or not isinstance(self.gate_bias, (int, float, np.floating)) \
                or not math.isfinite(self.gate_bias):
            raise ValueError(f"gate_bias must be a finite number, got {self.gate_bias!r}")
        if abs(self.gate_bias) > GATE_BIAS_LIMIT:
            raise ValueError(f"gate_bias {self.gate_bias!r} is out of range: a gate bias beyond +-{GATE_BIAS_LIMIT:g} "
                             f"holds the gate at 0 or 1 for good")
        if self.gate_bias and self.cell not in ("lstm", "gru"):
            raise ValueError(f"gate_bias sets the lstm forget / gru update gate; cell {self.cell} has neither")
        _check_float("ema", self.ema)
        if self.ema >= 1:
            raise ValueError(f"ema must be a decay in [0, 1), got {self.ema!r}")
        if self.locked_dropout is True and not (self.dropout or self.input_dropout or self.output_dropout):
            raise ValueError("locked_dropout shares each dropout mask across time steps: it needs dropout, "
                             "input_dropout or output_dropout above 0, got all three 0")
        if self.dropout and self.num_layers < 2:
            raise ValueError(f"dropout acts between stacked layers: it needs num_layers >= 2, got {self.num_layers}")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        return replace(self, lr=float(lr), clip=float(self.clip), fused=bool(self.fused) and self.cell in CELLS,
                       time_budget=float(self.time_budget), dropout=float(self.dropout),
                       input_dropout=float(self.input_dropout), output_dropout=float(self.output_dropout),
                       locked_dropout=_check_bool("locked_dropout", self.locked_dropout),
                       layer_norm=_check_bool("layer_norm", self.layer_norm),
                       state_reset=float(self.state_reset))


# Named configurations for `micrornn train --preset NAME`: TOML files in micrornn/train/presets/ (copy one,
# edit it, run it with --config), all on the bundled corpus, chosen by measurement (see the docs' quality
# section). `time_budget` stops a run at its limit on any machine (the final validation included) and the
# cosine decay follows the time used, so a slower machine gets fewer steps but still ends with a decayed
# learning rate; `steps` is only an upper bound.
PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESETS: dict[str, dict | None] = {path.stem: None for path in sorted(PRESET_DIR.glob("*.toml"))}  # read when used


def preset_settings(name) -> dict:
    """The settings of preset ``name`` (its TOML file); ValueError for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    settings = PRESETS[name]
    if settings is None:
        settings = PRESETS[name] = read_config(PRESET_DIR / f"{name}.toml")
    return dict(settings)


def preset_config(name, **overrides) -> TrainConfig:
    """The TrainConfig of preset `name` with `overrides` on top; ValueError for an unknown name."""
    return TrainConfig(**{**preset_settings(name), **overrides})


def option_name(name) -> str:
    """The `micrornn train` option that sets a TrainConfig field (num_layers -> --layers)."""
    known = {f.name: f for f in fields(TrainConfig)}
    flag = known[name].metadata.get("flag") if name in known else None
    return flag or "--" + name.replace("_", "-")


# ---- TOML: --config reads the fields, every run writes the ones it ran with ------------------------------

RUN_KEYS = {"data": "the UTF-8 text file trained on (absent: the bundled tinyshakespeare)"}  # not TrainConfig fields


def read_config(path) -> dict:
    """The settings in a TOML file: TrainConfig fields (plus ``data``); ValueError naming a bad key or line."""
    loads = _toml_reader()
    try:
        with open(path, "rb") as f:
            settings = loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:  # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    known = {f.name for f in fields(TrainConfig)} | set(RUN_KEYS)
    for key, value in settings.items():
        if key not in known:
            raise ValueError(f"{path}: unknown setting {key!r} (the keys are TrainConfig's fields: "
                             f"{', '.join(sorted(known))})")
        if isinstance(value, (dict, list)):
            raise ValueError(f"{path}: {key} must be a plain value, got a TOML {type(value).__name__}")
    return settings


def config_toml(config: TrainConfig, data=None, title="micrornn train configuration") -> str:
    """The TOML text of a configuration (each field after a comment with its help), readable by --config."""
    lines = [f"# {title}", "# run it again with: micrornn train --config THIS_FILE --checkpoint NEW.npz", ""]
    if data is not None:
        lines += [f"# {RUN_KEYS['data']}", f"data = {_toml_value(str(data))}", ""]
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        lines.append(f"# {f.metadata.get('help', f.name)}")
        lines.append(f"{f.name} = {_toml_value(value)}" if value is not None else f"# {f.name} = (default)")
    return "\n".join(lines) + "\n"


def write_config(path, config: TrainConfig, data=None) -> Path:
    """Write config_toml atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(config_toml(config, data), encoding="utf-8")
    tmp.replace(path)
    return path


def _toml_value(value) -> str:
    """A Python value as TOML: booleans, integers, floats (exact repr), strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = repr(float(value))
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(text, text)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string for ordinary text


def _toml_reader():
    """tomllib.loads (Python 3.11+), or tomli's on older Pythons."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ImportError("reading TOML needs Python 3.11+ or the tomli package (pip install tomli)") from None
    return tomllib.loads


def _check_int(name, value, low):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        kind = "a positive integer" if low == 1 else "a non-negative integer"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _check_float(name, value, positive=False):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")

