"""The two-path example of BPTT, printed step by step. Run: python examples/two_paths.py

In a 2-step RNN with loss L = L_1 + L_2, the state h_1 influences the loss along two paths:
  path 1: directly through its own output,  h_1 -> o_1 -> L_1:         V^T (softmax(o_1) - y_1)
  path 2: through the next state,           h_1 -> h_2 -> o_2 -> L_2:  W^T ((1 - h_2^2) * V^T (softmax(o_2) - y_2))
Backpropagation through time gives dL/dh_1 = path 1 + path 2. We compute both paths by hand in
NumPy and compare with the engine's gradient at h_1 and with the analytic BPTT's dL/dh_1.
"""
import argparse

import numpy as np

import micrornn
from micrornn import bptt
from micrornn.nn import functional as F
from micrornn.nn import SequenceModel

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.parse_args()  # no options: --help shows the docstring, anything else is refused

np.set_printoptions(precision=5, suppress=True)
I, H, O = 3, 4, 3
model = SequenceModel(I, H, O, rng=7)
cell, head = model.rnn.cells[0], model.head
U, W, b, V, c = cell.U.data, cell.W.data, cell.b.data, head.weight.data, head.bias.data
rng = np.random.default_rng(7)
x = rng.standard_normal((2, 1, I))  # T=2 steps, batch of 1
y = np.array([[2], [0]])            # target class at each step

print("1. forward, by hand (h_0 = 0)")
h1 = np.tanh(U @ x[0, 0] + b)
h2 = np.tanh(U @ x[1, 0] + W @ h1 + b)
p1, p2 = (np.exp(o - o.max()) / np.exp(o - o.max()).sum() for o in (V @ h1 + c, V @ h2 + c))
loss = -np.log(p1[y[0, 0]]) - np.log(p2[y[1, 0]])
print(f"   h_1 = {h1}\n   h_2 = {h2}\n   softmax(o_1) = {p1}   y_1 = {y[0, 0]}\n"
      f"   softmax(o_2) = {p2}   y_2 = {y[1, 0]}\n   L = L_1 + L_2 = {loss:.6f}")

print("2. the two paths into h_1, by hand")
d_o1, d_o2 = p1 - np.eye(O)[y[0, 0]], p2 - np.eye(O)[y[1, 0]]  # dL_t/do_t = softmax(o_t) - y_t
path1 = V.T @ d_o1
path2 = W.T @ ((1 - h2 ** 2) * (V.T @ d_o2))
print(f"   path 1  V^T (softmax(o_1) - y_1)                     = {path1}")
print(f"   path 2  W^T ((1 - h_2^2) * V^T (softmax(o_2) - y_2)) = {path2}")
print(f"   path 1 + path 2                                      = {path1 + path2}")

print("3. the engine: the same network from RNNCell and Linear, backward from L")
h1_t = cell(micrornn.Tensor(x[0]), micrornn.Tensor(np.zeros((1, H)))).retain_grad()
h2_t = cell(micrornn.Tensor(x[1]), h1_t)
L = F.cross_entropy(head(h1_t), y[0], reduction="sum") + F.cross_entropy(head(h2_t), y[1], reduction="sum")
L.backward()
engine = h1_t.grad[0]
print(f"   L = {L.item():.6f}\n   dL/dh_1 (engine, retain_grad) = {engine}")

_, _, hidden = bptt.loss_and_grads(model, x, y, return_hidden_grads=True)
print(f"   dL/dh_1 (analytic BPTT)       = {hidden[0][0, 0]}")

print("4. comparison")
for label, value in [("path 1 + path 2", path1 + path2), ("path 1 alone", path1), ("path 2 alone", path2)]:
    print(f"   max |engine - ({label})| = {np.max(np.abs(engine - value)):.2e}")
