"""Generating text from a trained character model, and loading one from a checkpoint.

    model, vocab, meta = load_model("runs/char_rnn.npz")
    print(sample(model, vocab, length=300, temperature=0.8, prime="ROMEO:", rng=0))
"""
from __future__ import annotations

import math

import numpy as np

from micrornn.train.checkpoint import CheckpointError, load_checkpoint
from micrornn.train.checkpoint_checks import check_finite, check_model_sizes, stored_dtype
from micrornn.train.data import Vocab
from micrornn.train.loop import set_training
from micrornn.nn import SequenceModel
from micrornn.nn.cells import is_import_name
from micrornn.nn.rnn import cell_import_name
from micrornn.engine.tensor import Tensor, no_grad

__all__ = ["sample", "generate", "MAX_SAMPLE_LENGTH", "load_model", "model_from_meta", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "char-rnn"  # meta["kind"] of checkpoints written by micrornn.train


def _check_temperature(temperature) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}") from None
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    return t


def next_id(logits, temperature, rng, top_k=None) -> int:
    """One id drawn from softmax(logits / temperature) over the top_k largest logits (None: all).

    temperature 0 is greedy (the largest logit). The logits are shifted by their maximum before
    the division, so a tiny temperature gives exp(-inf) = 0 for the others, never NaN.
    """
    z = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(z).all():
        raise ValueError("the model's output holds NaN or Inf; its parameters are not usable")
    if top_k is not None and top_k < len(z):
        z = np.where(z >= np.partition(z, -top_k)[-top_k], z, -np.inf)  # ties at the cut are kept
    if temperature == 0:
        return int(np.argmax(z))
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        p = np.exp((z - z.max()) / temperature)
    return int(rng.choice(len(p), p=p / p.sum()))


MAX_SAMPLE_LENGTH = 1_000_000  # the most characters `micrornn sample --length` asks for


def generate(model, vocab, length=200, temperature=1.0, prime="", rng=None, top_k=None, chunk=256):
    """The `length` sampled characters of `sample` (prime excluded), yielded `chunk` at a time as
    they are drawn, with dropout off; memory stays the same however long the text."""
    temperature = _check_temperature(temperature)
    if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 0:
        raise ValueError(f"length must be a non-negative integer, got {length!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if not isinstance(prime, str):
        raise TypeError(f"prime must be a str, got {type(prime).__name__}")
    rng = np.random.default_rng(rng)
    start = prime or ("\n" if "\n" in vocab else vocab.to_list()[0])
    ids = vocab.encode(start)  # ValueError naming the first unknown character
    return _draw(model, vocab, ids, length, temperature, rng, top_k, chunk)


def _draw(model, vocab, ids, length, temperature, rng, top_k, chunk):
    """The generator behind `generate` (its arguments are checked before the first character)."""
    was_training = set_training(model, False)  # dropout off: greedy output depends on the model alone
    try:
        with no_grad():
            logits, h = model(Tensor(ids.reshape(-1, 1)))  # (T, 1, V): read the whole prime at once
            last, out = logits.data[-1, 0], []
            for _ in range(length):
                nxt = next_id(last, temperature, rng, top_k)
                out.append(nxt)
                if len(out) == chunk:
                    yield vocab.decode(np.array(out, dtype=np.int64))
                    out = []
                logits, h = model(Tensor(np.array([[nxt]])), h)
                last = logits.data[-1, 0]
            if out:
                yield vocab.decode(np.array(out, dtype=np.int64))
    finally:
        set_training(model, was_training)


def sample(model, vocab, length=200, temperature=1.0, prime="", rng=None, top_k=None) -> str:
    """prime + `length` characters drawn one at a time from softmax(logits / temperature).

    The prime is read through the model first (it sets the hidden state); with an empty prime
    the model starts from a newline (not included in the result). Lower temperature: safer,
    more repetitive text; higher: more surprising; 0: always the most likely character (greedy).
    `top_k` draws only among the k most likely characters. Dropout is off while sampling.
    Characters of `prime` outside the vocabulary raise ValueError. The text is held whole: use
    `generate` to stream a long one.
    """
    return prime + "".join(generate(model, vocab, length, temperature, prime, rng, top_k))


def model_from_meta(meta, path="checkpoint", cell=None):
    """(SequenceModel, Vocab) rebuilt from the metadata of a `micrornn train` checkpoint, for any
    cell kind (meta["model"]["cell"]; checkpoints written before there were cells load as "rnn").

    A user cell is recorded by its import name only, and loading never imports it: the caller
    passes the class as ``cell`` (the same import name), else CheckpointError says which to pass."""
    if meta.get("kind") != CHECKPOINT_KIND or "model" not in meta or "vocab" not in meta:
        raise CheckpointError(f"{path} is a micrornn checkpoint but not a character model "
                              f"written by `micrornn train` (no model config / vocabulary)")
    config = dict(meta["model"]) if isinstance(meta["model"], dict) else {}
    config["cell"] = _user_cell(config.get("cell", "rnn"), cell, path)
    try:
        vocab = Vocab.from_list(meta["vocab"])
        config = dict(meta["model"], cell=config["cell"])
        config["dtype"] = np.dtype(config.get("dtype", "float64"))
        model = SequenceModel(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model configuration or vocabulary: {e}") from None
    if model.rnn.input_size != len(vocab) or model.head.out_features != len(vocab):
        raise CheckpointError(f"{path}: model input/output size {model.rnn.input_size}/"
                              f"{model.head.out_features} does not match the vocabulary of "
                              f"{len(vocab)} characters")
    return model, vocab


def _user_cell(recorded, cell, path):
    """The cell to build: the recorded built-in kind, or for a user cell the class the caller gave
    (it must carry the recorded import name). Never imports anything."""
    given = None if cell is None else cell if isinstance(cell, str) else cell_import_name(cell)
    if not is_import_name(recorded):  # a built-in kind (or nonsense, which SequenceModel names)
        if given is not None and given != recorded:
            raise CheckpointError(f"{path} was trained with the built-in cell {recorded!r}, not {given}; drop --cell")
        return recorded
    if given is None:
        raise CheckpointError(f"{path} was trained with the user cell {recorded}; pass --cell {recorded} to load it "
                              "(a checkpoint never imports code by itself)")
    if given != recorded:
        raise CheckpointError(f"{path} was trained with the user cell {recorded}, not {given}; pass --cell {recorded}")
    return cell


def load_model(path, cell=None):
    """(model, vocab, meta) from a checkpoint written by `micrornn train` / micrornn.train; ``cell``:
    the class of a user cell the checkpoint names (it is never imported from the checkpoint). A run
    trained with an EMA of its weights (``--ema``) loads as its averaged weights.

    A missing file raises FileNotFoundError; a corrupted, foreign or mismatched one CheckpointError.
    """
    params, meta, state = load_checkpoint(path)
    check_model_sizes(meta, params, path)  # before the model is built: no huge allocation
    if isinstance(state, dict) and isinstance(state.get("ema"), dict):
        params = state["ema"]  # a run with --ema: its averaged weights are the model (params: exact resume)
    check_finite(params, "parameter", path, stored_dtype(meta))  # in the model's dtype: 1e39 is inf in float32
    model, vocab = model_from_meta(meta, path, cell)
    try:
        model.load_state_dict(params)
    except ValueError as e:
        raise CheckpointError(f"{path}: parameters do not match the stored model config: {e}") \
            from None
    return model, vocab, meta
