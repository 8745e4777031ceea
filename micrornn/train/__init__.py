"""Training: config, the step and loop, data, checkpoints, sampling and plots, one module each.

    config.py      TrainConfig (every option, checked)       loop.py     update, TruncatedBPTT, fit, evaluate
    schedule.py    the learning-rate schedule                carried_state.py  state as arrays, stream resets
    stopping.py    time budget, early stopping               metrics.py  JSONL and TensorBoard logs
    data.py        Vocab, BatchStream, the bundled corpus    checkpoint.py  save/load, crash-safe
    sample.py      load_model, sample                        plots.py    plot_history
    trainer.py     Trainer: the `micrornn train` run (resume, Ctrl-C, validation, samples)
    ema.py         the moving average of the weights (--ema)  windows.py  windowed_loss (nanoGPT's estimate)
"""
from micrornn.train.trainer import (OPTIMIZERS, RunResult, TrainConfig, Trainer, bits_per_char, evaluate, fit,
                                    make_optimizer, plot_history, update)
from micrornn.train.loop import FitResult, StepInfo, TruncatedBPTT
from micrornn.train.metrics import MetricsLog, read_log
from micrornn.train.sample import load_model
from micrornn.train.windows import windowed_loss

__all__ = ["TrainConfig", "Trainer", "RunResult", "OPTIMIZERS", "make_optimizer", "update", "fit",
           "evaluate", "bits_per_char", "plot_history", "TruncatedBPTT", "StepInfo", "FitResult", "MetricsLog",
           "read_log", "load_model", "windowed_loss"]
