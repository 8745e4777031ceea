"""The training loop: a character-level RNN language model with truncated BPTT.

One loop, used by `micrornn train` and by the examples:

    trainer = Trainer(load_bundled_corpus(), TrainConfig(steps=500))
    result = trainer.run(checkpoint="runs/char_rnn.npz")      # progress bar, validation, samples
    print(result.val_loss, trainer.sample(300, prime="ROMEO:"))

Each step reads the next (seq_len, batch_size) chunk of every stream, runs the RNN from the hidden
state the previous chunk ended in (detached: the gradient stops at the chunk boundary, the state
does not), back-propagates the mean cross-entropy, clips the global gradient norm and takes an
optimizer step. Checkpoints hold everything the next step depends on (parameters, optimizer
buffers, step, carried hidden state, sampling RNG), so a resumed run is bit-for-bit the run that
was never stopped. `update()` and `fit()` are the same step and loop for other tasks (examples).

TrainConfig lives in micrornn.train.config, the step and loop helpers in micrornn.train.loop and
plot_history in micrornn.train.plots; all are re-exported by the package (`from micrornn.train import fit`).
"""
from __future__ import annotations

import hashlib
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from micrornn.progress import progress_bar, write

from micrornn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from micrornn.train.data import BatchStream, Vocab
from micrornn.train.loop import OPTIMIZERS, eval_batches, evaluate, fit, make_optimizer, update
from micrornn.nn import SequenceModel
from micrornn.train.plots import plot_history
from micrornn.train.sample import CHECKPOINT_KIND, model_from_meta, sample
from micrornn.train.config import TrainConfig, _check_int

__all__ = ["TrainConfig", "Trainer", "RunResult", "OPTIMIZERS", "make_optimizer", "update", "fit",
           "evaluate", "eval_batches", "plot_history"]

LAST_STEPS = 100   # the reported training loss is the mean over this many final steps


@dataclass
class RunResult:
    """What one call of Trainer.run did."""
    step: int                 # the trainer's step count at the end
    interrupted: bool         # stopped early by Ctrl-C (a checkpoint was saved if a path was given)
    train_loss: float         # mean training loss over the last LAST_STEPS steps, nats/char
    val_loss: float | None    # validation loss at the end (None when interrupted), nats/char
    seconds: float            # wall time of this run, validation and samples included
    chars_per_sec: float      # training characters per second (steps only)


class _Sigint:
    """While active (main thread only), a first Ctrl-C asks the loop to stop after the current
    step; a second one raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = self.forced = self.installed = False

    def _handle(self, signum, frame):
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.SIG_DFL)


class Trainer:
    """A character language model, its optimizer and data streams, and the loop that trains it."""

    def __init__(self, text, config=None, source=None):
        """Build vocabulary, train/validation split, model and optimizer for `text`.

        `source` (a path, or None for the bundled corpus) is recorded in checkpoints so a resumed
        run can find its data. ValueError if the text is too short for the configuration.
        """
        self.config = config = (config or TrainConfig()).validated()
        if not isinstance(text, str) or not text:
            raise ValueError("training text is empty")
        self.source, self.text_sha256 = source, hashlib.sha256(text.encode("utf-8")).hexdigest()
        self.vocab = Vocab(text)
        ids = self.vocab.encode(text)
        n_val = int(round(len(ids) * config.val_fraction))
        needed = config.batch_size * (config.seq_len + 1)
        if len(ids) - n_val < needed or n_val < 2:
            total = math.ceil(max(needed / (1 - config.val_fraction), 2 / config.val_fraction))
            raise ValueError(f"text of {len(ids)} characters is too short: batch_size={config.batch_size} x "
                             f"seq_len={config.seq_len} needs at least {total} (with a "
                             f"{config.val_fraction:.0%} validation split)")
        self.train_ids, self.val_ids = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
        self.stream = BatchStream(self.train_ids, config.batch_size, config.seq_len)
        V = len(self.vocab)
        self.model = SequenceModel(V, config.hidden_size, V, config.num_layers, config.nonlinearity,
                                   fused=config.fused, dtype=np.dtype(config.dtype),
                                   rng=np.random.default_rng(config.seed))
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters(), config.lr)
        self.sample_rng = np.random.default_rng([config.seed, 1])
        self.step = 0
        self.hidden = None  # (num_layers, batch_size, hidden_size) state carried to the next chunk
        self.history = {"step": [], "loss": [], "val_step": [], "val_loss": []}
        self.seconds = 0.0  # training wall time summed over all runs, resumed ones included

    # ---- one step, evaluation, sampling ------------------------------------------------------
    def train_step(self) -> float:
        """Train on the next chunk; return its loss (nats/char)."""
        k = self.stream.position
        x, y = next(self.stream)
        h0 = None if k % self.stream.steps_per_epoch == 0 else self.hidden  # new epoch: fresh state
        self.optimizer.lr = self.lr_at(self.step)
        try:
            loss, h_n = self.model.loss(x, y, h0, reduction="mean")
            update(loss, self.optimizer, self.config.clip)
        except BaseException:
            self.stream.seek(k)  # nothing was learned from this chunk: read it again next time
            raise
        self.hidden = h_n.detach().data  # truncated BPTT: keep the state, cut the graph
        self.step += 1
        value = float(loss.item())
        self.history["step"].append(self.step)
        self.history["loss"].append(value)
        return value

    def lr_at(self, step) -> float:
        """The learning rate of step `step` (0-based) under the config's schedule."""
        cfg = self.config
        if cfg.lr_schedule == "constant" or cfg.steps == 0:
            return cfg.lr
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))

    def evaluate(self, ids=None) -> float:
        """Loss in nats/char on `ids` (default: the validation split)."""
        return evaluate(self.model, self.val_ids if ids is None else ids)

    def sample(self, length=200, temperature=None, prime="", rng=None) -> str:
        """Text from the model (temperature None: the config's); uses the trainer's RNG by default."""
        temperature = self.config.sample_temperature if temperature is None else temperature
        return sample(self.model, self.vocab, length, temperature, prime,
                      self.sample_rng if rng is None else rng)

    def recent_loss(self, n=LAST_STEPS) -> float:
        """Mean training loss over the last n steps (nan before the first step)."""
        losses = self.history["loss"][-n:]
        return float(np.mean(losses)) if losses else float("nan")

    # ---- the loop ----------------------------------------------------------------------------
    def run(self, steps=None, checkpoint=None, progress=True, log=None, on_step=None) -> RunResult:
        """Train until the step count reaches `steps` (default config.steps) or Ctrl-C.

        Validates every config.val_every steps and at the end, prints a sample every
        config.sample_every steps, saves to `checkpoint` (if given) every config.checkpoint_every
        steps, at the end and on Ctrl-C. `log` receives each message (default: written above the
        progress bar; pass `lambda s: None` for silence). `on_step(trainer)` runs after each step.
        """
        cfg, target = self.config, self.config.steps if steps is None else steps
        _check_int("steps", target, 0)
        if checkpoint:  # a missing directory must not surface only after all the training
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        log = log or write
        start_step, start, train_time = self.step, time.perf_counter(), 0.0
        chars_per_step = cfg.seq_len * cfg.batch_size
        interrupted, ema = False, None
        bar = progress_bar(total=target, initial=min(start_step, target), disable=not progress, unit="step",
                   dynamic_ncols=True, leave=False)
        with _Sigint() as sigint:
            try:
                while self.step < target and not sigint.requested:
                    t0 = time.perf_counter()
                    loss = self.train_step()
                    train_time += time.perf_counter() - t0
                    ema = loss if ema is None else 0.95 * ema + 0.05 * loss
                    rate = (self.step - start_step) * chars_per_step / max(train_time, 1e-9)
                    bar.set_postfix_str(f"loss {ema:.3f}, {rate:,.0f} chars/s", refresh=False)
                    bar.update(1)
                    if cfg.val_every and self.step % cfg.val_every == 0 and self.step < target:
                        val = self._validate()
                        log(f"step {self.step}: train {self.recent_loss(cfg.val_every):.3f}, "
                            f"val {val:.3f} nats/char ({rate:,.0f} chars/s)")
                    if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < target:
                        log(f"--- sample at step {self.step} ---\n{self.sample(cfg.sample_length)}\n---")
                    if checkpoint and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save(checkpoint)
                    if on_step is not None:
                        on_step(self)
            except KeyboardInterrupt:
                if sigint.forced:  # second Ctrl-C: stop now, save nothing
                    bar.close()
                    raise
                interrupted = True
            finally:
                self.seconds += train_time
                bar.close()
        interrupted = interrupted or sigint.requested
        val = None
        if not interrupted:
            last = self.history["val_step"][-1:] == [self.step]
            val = self.history["val_loss"][-1] if last else self._validate()
        if checkpoint:
            self.save(checkpoint)
        steps_run = self.step - start_step
        return RunResult(self.step, interrupted, self.recent_loss(), val, time.perf_counter() - start,
                         steps_run * chars_per_step / train_time if train_time > 0 else 0.0)

    def _validate(self) -> float:
        val = self.evaluate()
        self.history["val_step"].append(self.step)
        self.history["val_loss"].append(val)
        return val

    # ---- checkpoints -------------------------------------------------------------------------
    def save(self, path) -> None:
        """Atomically write everything needed to sample from, or exactly resume, this run."""
        meta = {"kind": CHECKPOINT_KIND, "model": self.model.config, "vocab": self.vocab.to_list(),
                "config": asdict(self.config), "step": self.step, "seconds": self.seconds,
                "data": {"source": None if self.source is None else str(self.source),
                         "sha256": self.text_sha256, "characters": len(self.train_ids) + len(self.val_ids)},
                "history": self.history, "sample_rng": self.sample_rng.bit_generator.state}
        state = {"optimizer": self.optimizer.state_dict(), "hidden": self.hidden}
        save_checkpoint(path, self.model.state_dict(), meta, state)

    @staticmethod
    def read_checkpoint(path):
        """(params, meta, state) of a `micrornn train` checkpoint; CheckpointError if it is not one."""
        params, meta, state = load_checkpoint(path)
        model_from_meta(meta, path)  # kind, model config and vocabulary are present and coherent
        if not isinstance(meta.get("config"), dict) or not isinstance(state, dict) or "optimizer" not in state:
            raise CheckpointError(f"{path} holds a model but no training state; it can be sampled "
                                  f"from but not resumed")
        return params, meta, state

    @classmethod
    def resume(cls, path, text, source=None, **overrides):
        """The trainer saved at `path`, continuing on `text` (which must be the same text).

        `overrides` may change steps, lr, lr_schedule, clip, fused and the val/sample/checkpoint
        settings; anything else that differs from the checkpoint raises ValueError. (The cosine
        schedule ends at config.steps: resuming with a larger `steps` continues along the
        stretched schedule, so only a resume with the same `steps` repeats the original run.)
        """
        params, meta, state = cls.read_checkpoint(path)
        names = {f.name for f in fields(TrainConfig)}
        try:
            config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in names})
        except TypeError as e:
            raise CheckpointError(f"{path}: bad training config: {e}") from None
        fixed = set(names) - RESUME_OVERRIDABLE
        for key, value in overrides.items():
            if key not in names:
                raise TypeError(f"resume: unknown setting {key!r}")
            if key in fixed and value != getattr(config, key):
                raise ValueError(f"--{key.replace('_', '-')} {value} differs from the checkpoint's "
                                 f"{getattr(config, key)}; a resumed run keeps its {key}")
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if sha != meta.get("data", {}).get("sha256"):
            raise ValueError(f"the training text differs from the one {path} was trained on")
        trainer = cls(text, replace(config, **overrides), source)
        try:
            trainer.model.load_state_dict(params)
            trainer.optimizer.load_state_dict(state["optimizer"])
            trainer.step = int(meta["step"])
            hidden = state.get("hidden")
            trainer.hidden = None if hidden is None else np.asarray(hidden, dtype=trainer.config.dtype)
            trainer.sample_rng.bit_generator.state = meta["sample_rng"]
            trainer.history = {k: list(meta["history"][k]) for k in trainer.history}
            trainer.seconds = float(meta.get("seconds", 0.0))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot restore the training state: {e}") from None
        trainer.stream.seek(trainer.step)
        trainer.optimizer.lr = trainer.lr_at(trainer.step)
        return trainer


RESUME_OVERRIDABLE = {"steps", "lr", "lr_schedule", "clip", "fused", "val_every", "sample_every", "sample_length",
                      "sample_temperature", "checkpoint_every"}
