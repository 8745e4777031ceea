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
was never stopped. The step itself is train.loop's TruncatedBPTT, the same one `fit()` runs for any
recurrent model; the Trainer adds what a character run needs around it (data streams, resets, validation,
samples, checkpoints, Ctrl-C).

TrainConfig lives in micrornn.train.config, the step and loop helpers in micrornn.train.loop and
plot_history in micrornn.train.plots; all are re-exported by the package (`from micrornn.train import fit`).
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from micrornn.engine.compile import compile as compile_fn
from micrornn.train.progress import progress_bar, write

from micrornn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from micrornn.train.checkpoint_checks import (check_carried_state, check_finite, check_model_sizes, check_training_meta,
                                              stored_dtype)
from micrornn.train.data import BatchStream, Vocab, compact_dtype, split_point, text_sha256
from micrornn.train.loop import (OPTIMIZERS, TruncatedBPTT, bits_per_char, evaluate, fit, make_optimizer,
                                 set_training, update)
from micrornn.nn import SequenceModel, init_gate_bias
from micrornn.nn.rnn import CELL_KINDS, cell_import_name
from micrornn.engine.random import manual_seed
from micrornn.train.plots import plot_history
from micrornn.train.sample import CHECKPOINT_KIND, model_from_meta, sample
from micrornn.train.config import TrainConfig, _check_int, option_name
from micrornn.train.limits import TooBig, check_fits, rnn_run_bytes
from micrornn.train.console import SafeLog
from micrornn.train.interrupts import RunSignals
from micrornn.train.schedule import learning_rate
from micrornn.train.carried_state import reset_some_streams, state_arrays
from micrornn.train.stopping import Budget, EarlyStopping
from micrornn.train.ema import WeightAverage

__all__ = ["TrainConfig", "Trainer", "RunResult", "OPTIMIZERS", "make_optimizer", "update", "fit",
           "evaluate", "bits_per_char", "plot_history", "build_model"]

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
    stopped_by: str = "steps"  # "steps", "time budget", "early stopping" or "interrupt"


class CheckpointSaveError(OSError):
    """The checkpoint could not be written; `rescue` is where the state went instead (or None)."""

    def __init__(self, message, rescue=None):
        super().__init__(message)
        self.rescue = rescue


class Trainer:
    """A character language model, its optimizer and data streams, and the loop that trains it."""

    def __init__(self, text, config=None, source=None, cell=None):
        """Build vocabulary, train/validation split, model and optimizer for `text`.

        `source` (a path, or None for the bundled corpus) is recorded in checkpoints so a resumed
        run can find its data. `cell`: a user cell class/factory (config.cell records its import
        name). ValueError if the text is too short for the configuration.
        """
        self.config = config = with_cell(config or TrainConfig(), cell).validated()
        self.cell = cell
        if not isinstance(text, str) or not text:
            raise ValueError("training text is empty")
        self.source, self.text_sha256 = source, text_sha256(text)
        self.vocab = Vocab(text)
        ids = self.vocab.encode(text, dtype=compact_dtype(len(self.vocab)))  # 1 byte a character for <= 256
        n_val = len(ids) - split_point(len(ids), config.val_fraction)
        needed = config.batch_size * (config.seq_len + 1)
        if len(ids) - n_val < needed or n_val < 2:
            total = math.ceil(max(needed / (1 - config.val_fraction), 2 / config.val_fraction))
            raise ValueError(f"text of {len(ids)} characters is too short: batch_size={config.batch_size} x "
                             f"seq_len={config.seq_len} needs at least {total} (with a "
                             f"{config.val_fraction:.0%} validation split)")
        self.train_ids, self.val_ids = ids[:len(ids) - n_val], ids[len(ids) - n_val:]
        self.stream = BatchStream(self.train_ids, config.batch_size, config.seq_len)
        check_training_fits(config, len(self.vocab))  # refuse absurd sizes before allocating them
        self.model = build_model(config, len(self.vocab), cell)
        self.optimizer = make_optimizer(config.optimizer, self.model.parameters(), config.lr, config.weight_decay)
        self.ema = WeightAverage(self.model, config.ema) if config.ema else None  # updated after every step
        self.sample_rng = np.random.default_rng([config.seed, 1])
        self.step = 0
        # the generic truncated-BPTT step (train.loop); the carried state is kept as arrays for checkpoints
        self.tbptt = TruncatedBPTT(self.model, self.optimizer, clip=config.clip, detach=state_arrays,
                                   forward=self._compiled_forward())
        self.grad_norm = float("nan")  # of the last update, before clipping
        self.early = EarlyStopping(config.patience)
        self.wall_seconds = 0.0  # wall time of all runs, validation included (what time_budget limits)
        self.time_progress = 0.0  # fraction of the time budget used (drives the cosine when it leads)
        self.history = {"step": [], "loss": [], "val_step": [], "val_loss": [], "val_chars": []}
        self.seconds = 0.0  # training wall time summed over all runs, resumed ones included

    # ---- one step, evaluation, sampling ------------------------------------------------------
    @property
    def hidden(self):
        """The (num_layers, batch_size, hidden_size) state carried to the next chunk (LSTM: (h, c)), as arrays."""
        return self.tbptt.state

    @hidden.setter
    def hidden(self, state):
        self.tbptt.state = state

    def train_step(self) -> float:
        """Train on the next chunk; return its loss (nats/char)."""
        k, carried = self.stream.position, self.hidden
        x, y = next(self.stream)
        h0 = None if k % self.stream.steps_per_epoch == 0 else carried  # new epoch: fresh state
        self.hidden = reset_some_streams(h0, self.config.state_reset, self.config.seed, self.step)
        c = self.config  # dropout masks drawn from (seed, step): a resumed run draws the same ones
        if c.dropout or c.input_dropout or c.output_dropout:
            manual_seed(int(np.random.SeedSequence([self.config.seed, 3, self.step]).generate_state(1)[0]))
        self.optimizer.lr = self.lr_at(self.step)
        signals = getattr(self, "_signals", None)
        try:  # all of the update and its record, or none of it
            value, _ = self.tbptt.step(x, y, guard=signals.shield() if signals else None, record=self._record_step)
        except BaseException:
            self.stream.seek(k)  # nothing was learned from this chunk: read it again next time
            self.hidden = carried
            raise
        return value

    def _compiled_forward(self):
        """For an unrolled model with config.compile: the chunk's loss through micrornn.compile (traced
        once, then replayed; the same gradients as the engine's), else None (TruncatedBPTT's default)."""
        self.compiled_loss = None
        if not self.config.compile or self.config.fused:
            return None
        step = self.compiled_loss = compile_fn(lambda x, y, h0: self.model.loss(x, y, h0, reduction="mean"))
        return lambda model, x, y, state: step(x, y, state)

    def _record_step(self, loss, grad_norm) -> None:
        """Count an update and keep its loss and gradient norm."""
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.step)
        self.grad_norm = grad_norm
        self.history["step"].append(self.step)
        self.history["loss"].append(loss)

    def lr_at(self, step) -> float:
        """The learning rate of step `step` (0-based): warm-up, then cosine decay over the run, whose
        progress is the larger of step / steps and the fraction of the time budget used."""
        cfg = self.config
        progress = max(min(step, cfg.steps) / cfg.steps if cfg.steps else 0.0, self.time_progress)
        return learning_rate(cfg.lr, step, progress, cfg.warmup, cfg.lr_schedule)

    def averaged(self):
        """A context in which the model holds the EMA weights (config.ema), restored exactly afterwards."""
        return nullcontext() if self.ema is None else self.ema.swapped_in()

    def evaluate(self, ids=None, max_chars=None) -> float:
        """Loss in nats/char on `ids` (default: the validation split) read as one stream (EMA weights if on)."""
        ids = self.val_ids if ids is None else ids
        ids = ids[:len(ids) if max_chars is None else int(max_chars) + 1]  # only what is scored
        with self.averaged():
            return evaluate(self.model, np.asarray(ids, dtype=np.int64), max_chars=max_chars)

    def sample(self, length=200, temperature=None, prime="", rng=None) -> str:
        """Text from the model (temperature None: the config's); uses the trainer's RNG by default."""
        temperature = self.config.sample_temperature if temperature is None else temperature
        was_training = set_training(self.model, False)  # no dropout while generating
        try:
            with self.averaged():
                return sample(self.model, self.vocab, length, temperature, prime,
                              self.sample_rng if rng is None else rng)
        finally:
            set_training(self.model, was_training)

    def recent_loss(self, n=LAST_STEPS) -> float:
        """Mean training loss over the last n steps (nan before the first step)."""
        losses = self.history["loss"][-n:]
        return float(np.mean(losses)) if losses else float("nan")

    # ---- the loop ----------------------------------------------------------------------------
    def run(self, steps=None, checkpoint=None, progress=True, log=None, on_step=None, metrics=None) -> RunResult:
        """Train until the step count reaches `steps` (default config.steps), the time budget is
        used up (config.time_budget, keeping time for the final validation), early stopping
        (config.patience) or Ctrl-C.

        Validates every config.val_every steps (on the first config.val_chars characters of the
        validation split; with a checkpoint path, a new best is also saved to <name>_best.npz) and
        at the end on all of it, prints a sample every config.sample_every steps, saves to
        `checkpoint` (if given) every config.checkpoint_every steps, at the end and on Ctrl-C. `log`
        receives each message (default: written above the progress bar; pass `lambda s: None` for
        silence). `on_step(trainer)` runs after each step. `metrics` (a MetricsLog) gets a "train"
        record every config.log_every steps and a "val" record per validation.
        """
        target = self.config.steps if steps is None else steps
        _check_int("steps", target, 0)
        if checkpoint:  # a missing directory must not surface only after all the training
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        run = _Run(self, target, checkpoint, SafeLog(log or write), metrics)  # a closed pipe never stops training
        self._run_started = run.start  # saves during the run count the time since then (see save)
        run.bar = self._progress_bar(target, progress)
        self._signals = signals = RunSignals()
        failure: BaseException | None = None
        interrupted = False
        with signals:
            try:
                self._train_until_stopped(run, on_step)
                if not signals.requested:
                    run.val = self._final_validation(run)
            except KeyboardInterrupt as e:
                failure = e if signals.forced or not signals.installed else None
                interrupted = True
            except BaseException as e:  # divergence, a failing callback, ...: save first, then report
                failure = e
            finally:
                self.seconds += run.train_time
                run.bar.close()
            interrupted = interrupted or signals.requested
            if signals.forced and failure is None:  # a second Ctrl-C that arrived during an update
                failure = KeyboardInterrupt()
            if interrupted:
                run.val, run.stopped_by = None, "interrupt"
            self.wall_seconds += time.perf_counter() - run.start
            self._run_started = None
            if checkpoint and self.step > 0:
                self._save_final(checkpoint, failure)
        if failure is not None:
            raise failure
        steps_run = self.step - run.start_step
        return RunResult(self.step, interrupted, self.recent_loss(), run.val, time.perf_counter() - run.start,
                         steps_run * run.chars_per_step / run.train_time if run.train_time > 0 else 0.0,
                         run.stopped_by)

    def _progress_bar(self, target, progress):
        """A bar counting steps, or seconds of the time budget when there is one."""
        timed, seconds = bool(self.config.time_budget), round(self.config.time_budget)
        initial = min(round(self.wall_seconds), seconds) if timed else min(self.step, target)
        return progress_bar(total=seconds if timed else target, disable=not progress, initial=initial,
                            unit="s" if timed else "step", dynamic_ncols=True, leave=False)

    def _train_until_stopped(self, run, on_step) -> None:
        """Steps with their periodic validations, samples and saves, until something stops the run."""
        while self.step < run.target and not self._signals.requested:
            if run.out_of_time():
                run.stopped_by = "time budget"
                return
            run.timed_step()
            stop = self._periodic_work(run)
            if on_step is not None and not stop:
                on_step(self)
            if stop:
                return

    def _periodic_work(self, run) -> bool:
        """Validation, sample and checkpoint due at this step; True when early stopping ends the run."""
        cfg, signals = self.config, self._signals
        if run.metrics is not None and self.step % cfg.log_every == 0:
            run.metrics.write("train", self.step, loss=self.history["loss"][-1], lr=self.optimizer.lr,
                              grad_norm=self.grad_norm, chars_per_sec=run.rate())
        if cfg.val_every and self.step % cfg.val_every == 0 and self.step < run.target:
            if self._periodic_validation(run):
                return True
        if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < run.target:
            with signals.stoppable():
                text = self.sample(cfg.sample_length)
            run.log(f"--- sample at step {self.step} ---\n{text}\n---")
        if run.checkpoint and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self._save_or_warn(run.checkpoint, run.log)
        return False

    def _periodic_validation(self, run) -> bool:
        """Score a prefix of the validation split, save a new best; True when early stopping says stop."""
        cfg, checkpoint = self.config, run.checkpoint
        t_val = time.perf_counter()
        with self._signals.stoppable():
            run.val = self._validate(cfg.val_chars or None, run.metrics)
        run.reserve = max(run.reserve, self._final_eval_seconds(time.perf_counter() - t_val))
        best = self.early.update(run.val, self.step)
        run.log(f"step {self.step}: train {self.recent_loss(cfg.val_every):.3f}, val {run.val:.3f} nats/char "
                f"({bits_per_char(run.val):.3f} bits){' (new best)' if best else ''} ({run.rate():,.0f} chars/s)")
        if best and checkpoint:
            self._save_or_warn(best_checkpoint_path(checkpoint), run.log)
        if not self.early.stop:
            return False
        run.stopped_by = "early stopping"
        run.log(f"early stopping: no new best in {cfg.patience} validations; the best, {self.early.best:.3f} at "
                f"step {self.early.best_step}, is in "
                f"{best_checkpoint_path(checkpoint) if checkpoint else '(no checkpoint path)'}")
        return True

    def _final_validation(self, run) -> float:
        """The validation on the whole split that ends a run (reused when this step already had one)."""
        last = self.history["val_step"][-1:] == [self.step] and self.history["val_chars"][-1:] == [0]
        with self._signals.stoppable():
            return self.history["val_loss"][-1] if last else self._validate(None, run.metrics)

    def _save_or_warn(self, path, log) -> None:
        """A save during the run: a failure is reported in one line and training goes on."""
        try:
            with self._signals.shield():
                self.save(path)
        except OSError as e:
            log(f"warning: could not save {path} at step {self.step}: {e.strerror or e}; training goes on")

    def parameters_finite(self) -> bool:
        """Whether every parameter is finite (the final save refuses to write inf or NaN weights)."""
        return all(np.isfinite(p.data).all() for p in self.model.parameters())

    def _save_final(self, path, failure=None) -> None:
        """The save at the end of a run, whatever ended it; on failure the state goes to a rescue file."""
        if not self.parameters_finite():
            return  # never overwrite a good checkpoint with NaN parameters
        try:
            with self._signals.shield():
                self.save(path)
        except OSError as e:
            rescue = self._rescue(path)
            where = (f"the trained state (step {self.step}) was saved to {rescue} instead" if rescue else
                     "no rescue copy could be written either (tried the temporary directory, home and here)")
            raise CheckpointSaveError(f"could not save {path}: {e.strerror or e}; any previous checkpoint "
                                      f"there is unchanged; {where}", rescue) from failure

    def _rescue(self, path):
        """Save to the first writable fallback location; returns its path or None."""
        name = f"{Path(path).stem}-rescue-step{self.step}-{os.getpid()}{Path(path).suffix or '.npz'}"
        for directory in (tempfile.gettempdir(), Path.home(), Path.cwd()):
            try:
                with self._signals.shield():
                    self.save(Path(directory) / name)
                return Path(directory) / name
            except OSError:
                continue
        return None

    def _validate(self, max_chars=None, metrics=None) -> float:
        """Score the validation split (its first max_chars predictions; None: all) and record it."""
        val = self.evaluate(max_chars=max_chars)
        scored = 0 if max_chars is None or max_chars >= len(self.val_ids) - 1 else int(max_chars)
        self.history["val_step"].append(self.step)
        self.history["val_loss"].append(val)
        self.history["val_chars"].append(scored)  # 0: the whole split
        if metrics is not None:
            metrics.write("val", self.step, val_loss=val, val_bits=bits_per_char(val), val_chars=scored,
                          train_loss=self.recent_loss(self.config.val_every or LAST_STEPS))
        return val

    def _final_eval_seconds(self, measured=None) -> float:
        """Wall time to keep for the final validation: from a validation that took `measured`
        seconds, or from a 2,000-character probe; 0 when there is no time budget."""
        if not self.config.time_budget:
            return 0.0
        chars = self.config.val_chars or len(self.val_ids)
        if measured is None:
            t0, chars = time.perf_counter(), 2000
            self.evaluate(max_chars=chars)
            measured = time.perf_counter() - t0
        return 1.25 * measured * len(self.val_ids) / min(chars, len(self.val_ids))

    # ---- checkpoints -------------------------------------------------------------------------
    def save(self, path) -> None:
        """Atomically write everything needed to sample from, or exactly resume, this run."""
        meta = {"kind": CHECKPOINT_KIND, "model": self.model.config, "vocab": self.vocab.to_list(),
                "config": asdict(self.config), "step": self.step, "seconds": self.seconds,
                "data": {"source": None if self.source is None else str(self.source),
                         "sha256": self.text_sha256, "characters": len(self.train_ids) + len(self.val_ids)},
                "history": self.history, "sample_rng": self.sample_rng.bit_generator.state,
                "validation": self.validation_tag(), "wall_seconds": self._wall_seconds_now(),
                "early_stopping": {"best": self.early.best if self.early.best_step is not None else None,
                                   "best_step": self.early.best_step, "bad": self.early.bad}}
        state = {"optimizer": self.optimizer.state_dict(), "hidden": self.hidden}
        if self.ema is not None:  # the parameters stay the trained weights (exact resume); load_model uses these
            state["ema"] = self.ema.state_dict()
        save_checkpoint(path, self.model.state_dict(), meta, state)

    def _wall_seconds_now(self) -> float:
        """Wall time of all runs up to now: a periodic or best checkpoint saved mid-run (the one a
        kill -9 leaves) carries the time used so far, so a resumed run keeps its time budget."""
        started = getattr(self, "_run_started", None)
        return self.wall_seconds + (0.0 if started is None else time.perf_counter() - started)

    def validation_tag(self) -> dict | None:
        """The latest validation (nats and bits per character, its step and the characters scored,
        0 meaning the whole split), as stored in checkpoints; None before the first."""
        if not self.history["val_loss"]:
            return None
        nats = self.history["val_loss"][-1]
        return {"nats_per_char": nats, "bits_per_char": bits_per_char(nats), "step": self.history["val_step"][-1],
                "chars": self.history["val_chars"][-1]}

    @staticmethod
    def read_checkpoint(path, cell=None):
        """(params, meta, state) of a `micrornn train` checkpoint; CheckpointError if it is not one
        (or if it names a user cell and `cell` is not that class: a checkpoint never imports code)."""
        params, meta, state = load_checkpoint(path)
        check_model_sizes(meta, params, path)  # before the model is built: no huge allocation
        model_from_meta(meta, path, cell)  # kind, model config and vocabulary are present and coherent
        if not isinstance(meta.get("config"), dict) or not isinstance(state, dict) or "optimizer" not in state:
            raise CheckpointError(f"{path} holds a model but no training state; it can be sampled "
                                  f"from but not resumed")
        check_training_meta(meta, params, state, path)
        return params, meta, state

    @classmethod
    def resume(cls, path, text, source=None, cell=None, **overrides):
        """The trainer saved at `path`, continuing on `text` (which must be the same text).

        `overrides` may change steps, lr, lr_schedule, clip, fused and the val/sample/checkpoint
        settings; anything else that differs from the checkpoint raises ValueError. (The cosine
        schedule ends at config.steps: resuming with a larger `steps` continues along the
        stretched schedule, so only a resume with the same `steps` repeats the original run.)
        """
        params, meta, state = cls.read_checkpoint(path, cell)
        names = {f.name for f in fields(TrainConfig)}
        try:
            config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in names})
            config.validated()
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: bad training config: {e}") from None
        fixed = set(names) - RESUME_OVERRIDABLE
        for key, value in overrides.items():
            if key not in names:
                raise TypeError(f"resume: unknown setting {key!r}")
            if key in fixed and value != getattr(config, key):
                raise ValueError(f"{option_name(key)} {value} differs from the checkpoint's "
                                 f"{getattr(config, key)}; a resumed run keeps its {key}")
        sha = text_sha256(text)
        if sha != meta.get("data", {}).get("sha256"):
            raise ValueError(f"the training text differs from the one {path} was trained on")
        trainer = cls(text, replace(config, **overrides), source, cell)
        try:
            trainer.model.load_state_dict(params)
            trainer.optimizer.load_state_dict(state["optimizer"])
            if trainer.ema is not None:
                if not isinstance(state.get("ema"), dict):
                    raise CheckpointError(f"{path}: the config has ema {config.ema} but the checkpoint holds no "
                                          "averaged weights")
                check_finite(state["ema"], "ema average", path, stored_dtype(meta))
                trainer.ema.load_state_dict(state["ema"])
            trainer.step = int(meta["step"])
            hidden = state.get("hidden")
            check_carried_state(hidden, trainer.config, path)
            trainer.hidden = None if hidden is None else _state_array(hidden, trainer.config.dtype)
            trainer.sample_rng.bit_generator.state = meta["sample_rng"]
            trainer.history = {k: list(meta["history"][k]) for k in trainer.history if k != "val_chars"}
            trainer.history["val_chars"] = list(meta["history"].get("val_chars", [0] * len(trainer.history["val_loss"])))
            trainer.wall_seconds = float(meta.get("wall_seconds", 0.0))
            early = meta.get("early_stopping") or {}
            trainer.early = EarlyStopping(trainer.config.patience, math.inf if early.get("best") is None
                                          else float(early["best"]), early.get("best_step"), int(early.get("bad", 0)))
            trainer.seconds = float(meta.get("seconds", 0.0))
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as e:
            raise CheckpointError(f"{path}: cannot restore the training state: {e}") from None
        trainer.stream.seek(trainer.step)
        trainer.optimizer.lr = trainer.lr_at(trainer.step)
        return trainer


class _Run:
    """The clock and counters of one Trainer.run call."""

    def __init__(self, trainer, target, checkpoint, log, metrics):
        self.trainer, self.target, self.checkpoint, self.log, self.metrics = trainer, target, checkpoint, log, metrics
        self.start_step, self.start, self.train_time, self.ema = trainer.step, time.perf_counter(), 0.0, None
        self.stopped_by, self.val, self.bar = "steps", None, None
        self.chars_per_step = trainer.config.seq_len * trainer.config.batch_size
        self.budget = Budget(trainer.config.time_budget, trainer.wall_seconds)
        self.reserve = trainer._final_eval_seconds()

    def out_of_time(self) -> bool:
        """Update the trainer's time progress; True when the budget leaves only the final validation."""
        if not self.budget.seconds:
            return False
        self.trainer.time_progress = self.budget.fraction(time.perf_counter() - self.start, self.reserve)
        return self.budget.exhausted(time.perf_counter() - self.start, self.reserve)

    def rate(self) -> float:
        """Training characters per second of this run (steps only)."""
        return (self.trainer.step - self.start_step) * self.chars_per_step / max(self.train_time, 1e-9)

    def timed_step(self) -> None:
        """One training step, timed, with the progress bar moved on."""
        t0 = time.perf_counter()
        loss = self.trainer.train_step()
        self.train_time += time.perf_counter() - t0
        self.ema = loss if self.ema is None else 0.95 * self.ema + 0.05 * loss
        timed = bool(self.budget.seconds)
        self.bar.set_postfix_str(f"{'step ' + str(self.trainer.step) + ', ' if timed else ''}loss {self.ema:.3f}, "
                                 f"{self.rate():,.0f} chars/s", refresh=False)
        if timed:  # seconds of the budget used so far
            used = round(self.budget.used_before + time.perf_counter() - self.start)
            self.bar.update(min(used, round(self.budget.seconds)) - self.bar.n)
        else:
            self.bar.update(1)


RESUME_OVERRIDABLE = {"steps", "lr", "lr_schedule", "clip", "fused", "val_every", "sample_every", "sample_length",
                      "compile", "sample_temperature", "checkpoint_every", "time_budget", "patience", "val_chars", "log_every"}


def with_cell(config, cell):
    """config naming `cell` (a user cell class/factory) by its import name; config itself when cell is None.
    ValueError when config names another cell, or names a user cell and none is given."""
    if cell is None:
        if config.cell not in CELL_KINDS:
            raise ValueError(f"cell {config.cell} is a user cell: pass the class too (Trainer(..., cell=...), or "
                             f"--cell {config.cell})")
        return config
    name = cell_import_name(cell)
    if config.cell not in ("rnn", name):
        raise ValueError(f"the config names cell {config.cell!r} but the cell given is {name}")
    return replace(config, cell=name)


def build_model(config, vocab_size, cell=None) -> SequenceModel:
    """The SequenceModel a TrainConfig describes, for a vocabulary of `vocab_size` characters
    (`cell`: the class of the user cell config.cell names)."""
    model = SequenceModel(vocab_size, config.hidden_size, vocab_size, config.num_layers, config.nonlinearity,
                          fused=config.fused, dtype=np.dtype(config.dtype), rng=np.random.default_rng(config.seed),
                          cell=config.cell if cell is None else cell, dropout=config.dropout,
                          input_dropout=config.input_dropout, output_dropout=config.output_dropout,
                          locked_dropout=config.locked_dropout, layer_norm=config.layer_norm)
    if config.gate_bias:
        init_gate_bias(model, config.gate_bias)  # the lstm forget / gru update gate
    return model


def check_training_fits(config, vocab_size) -> None:
    """TooBig (a ValueError naming the option, e.g. --hidden-size) when the run cannot fit in memory."""
    def estimate(hidden_size, num_layers, batch_size, seq_len, sample_length):
        sampling = 2.5 * sample_length * 64  # the generated ids and text held while sampling
        return rnn_run_bytes(vocab_size, hidden_size, vocab_size, num_layers, seq_len, batch_size,
                             np.dtype(config.dtype).itemsize, config.cell, sampling)
    defaults = TrainConfig()
    sizes = {name: getattr(config, name) for name in ("hidden_size", "num_layers", "batch_size", "seq_len",
                                                      "sample_length")}
    try:
        check_fits(estimate, sizes, {name: getattr(defaults, name) for name in sizes})
    except TooBig as e:
        name = str(e).split(" ", 1)[0]
        raise TooBig(f"{option_name(name)}{str(e)[len(name):]}") from None


def best_checkpoint_path(checkpoint) -> Path:
    """Where the best-validation checkpoint of a run saving to `checkpoint` goes: <stem>_best<suffix>."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}_best{path.suffix}")


def _state_array(hidden, dtype):
    """A stored carried state as arrays of `dtype` (a tuple stays a tuple: the LSTM's (h, c))."""
    if isinstance(hidden, tuple):
        return tuple(np.asarray(h, dtype=dtype) for h in hidden)
    return np.asarray(hidden, dtype=dtype)
