"""Analytic BPTT in plain NumPy: the independent reference for the engine, and the fused fast path.

One module per cell kind; ``loss_and_grads`` is the entry point for a whole ``SequenceModel``.
"""
from micrornn.bptt.vanilla import *  # noqa: F401,F403
from micrornn.bptt.vanilla import (NONLINEARITIES, log_softmax, loss_and_grads, rnn_layer_backward,
                                   rnn_layer_forward, softmax_cross_entropy)
