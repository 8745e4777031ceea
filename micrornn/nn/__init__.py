"""Modules: Module, Parameter, Linear, Embedding, the recurrent cells and layers, SequenceModel."""
from micrornn.nn.cells import GRUCell, LSTMCell, RNNCell
from micrornn.nn.init import init_gate_bias
from micrornn.nn.layers import Embedding, Linear
from micrornn.nn.module import Module, Parameter, functional_call
from micrornn.nn.recurrent import Recurrent, StepScope, detach_state_tensors, unroll
from micrornn.nn.rnn import GRU, LSTM, RNN, SequenceModel

__all__ = ["Module", "Parameter", "Linear", "Embedding", "RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM",
           "GRU", "Recurrent", "SequenceModel", "StepScope", "detach_state_tensors", "unroll",
           "functional_call", "init_gate_bias"]
