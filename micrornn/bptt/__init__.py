"""Analytic BPTT in plain NumPy: the independent reference for the engine, and the fused fast path.

One module per cell kind (vanilla, lstm, gru) with its layer forward and backward, ``shared`` for
the head, the loss, lengths and the argument checks, and ``model`` for the one whole-model route:
``loss_and_grads`` (and ``step_grads``) for any SequenceModel of a built-in cell kind.
"""
from micrornn.bptt.gru import gru_layer_backward, gru_layer_forward
from micrornn.bptt.lstm import lstm_layer_backward, lstm_layer_forward
from micrornn.bptt.model import loss_and_grads, step_grads
from micrornn.bptt.shared import check_lengths, length_mask, log_softmax, reverse_index, softmax_cross_entropy
from micrornn.bptt.vanilla import NONLINEARITIES, rnn_layer_backward, rnn_layer_forward

__all__ = ["loss_and_grads", "step_grads", "rnn_layer_forward", "rnn_layer_backward", "lstm_layer_forward",
           "lstm_layer_backward", "gru_layer_forward", "gru_layer_backward", "softmax_cross_entropy", "log_softmax",
           "check_lengths", "length_mask", "reverse_index", "NONLINEARITIES"]
