"""Check an RNN's gradients three ways: autograd through the unrolled graph, the hand-derived
BPTT of micrornn.bptt, and central finite differences. Run: python examples/gradcheck_rnn.py"""
import argparse

from micrornn.check import routes as rnncheck

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.parse_args()  # no options: --help shows the docstring, anything else is refused

# A random 2-layer tanh SequenceModel (float64) and a random sequence: x (T, B, I), targets (T, B).
model, x, targets, h0 = rnncheck.random_problem(layers=2, input_size=3, hidden_size=5, output_size=4,
                                                steps=8, batch=3, nonlinearity="tanh", seed=1)

# For every parameter: max |autograd - analytic|, and each route against finite differences.
rows = rnncheck.compare(model, x, targets, h0, eps=1e-6, atol=1e-5, rtol=1e-3)
print(rnncheck.format_table(rows))
print(rnncheck.summary(rows))
