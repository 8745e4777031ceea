"""Training: config, the step and loop, data, checkpoints, sampling and plots, one module each.

    config.py      TrainConfig (every option, checked)       loop.py     update, fit, evaluate
    data.py        Vocab, BatchStream, the bundled corpus    checkpoint.py  save/load, crash-safe
    sample.py      load_model, sample                        plots.py    plot_history
    trainer.py     Trainer: the `micrornn train` run (resume, Ctrl-C, validation, samples)

The old top-level modules (micrornn.train.data, micrornn.train.checkpoint, ...) are aliases of these.
"""
from micrornn.train.trainer import (OPTIMIZERS, RunResult, TrainConfig, Trainer, bits_per_char, evaluate, fit,
                                    make_optimizer, plot_history, update)

__all__ = ["TrainConfig", "Trainer", "RunResult", "OPTIMIZERS", "make_optimizer", "update", "fit",
           "evaluate", "bits_per_char", "plot_history"]
