"""Analytic BPTT in plain NumPy: the independent reference for the engine, and the fused fast path.

One module per cell kind (vanilla, lstm, gru) and ``shared`` for the head, the loss and the
argument checks; ``loss_and_grads`` is the entry point for a whole ``SequenceModel``.
"""
from micrornn.bptt.vanilla import *  # noqa: F401,F403
from micrornn.bptt.gru import gru_layer_backward, gru_layer_forward  # noqa: F401
from micrornn.bptt.lstm import lstm_layer_backward, lstm_layer_forward  # noqa: F401
from micrornn.bptt.shared import log_softmax, softmax_cross_entropy  # noqa: F401
from micrornn.bptt.vanilla import NONLINEARITIES, rnn_layer_backward, rnn_layer_forward  # noqa: F401
from micrornn.bptt.model import loss_and_grads, step_grads  # noqa: F401
