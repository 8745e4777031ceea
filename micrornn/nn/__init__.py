"""Modules: Module, Parameter, Linear, Embedding, RNNCell, RNN, SequenceModel."""
from micrornn.nn.layers import Embedding, Linear
from micrornn.nn.module import Module, Parameter
from micrornn.nn.rnn import RNN, RNNCell, SequenceModel, StepScope

__all__ = ["Module", "Parameter", "Linear", "Embedding", "RNNCell", "RNN", "SequenceModel", "StepScope"]
