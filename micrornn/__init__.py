"""micrornn: reverse-mode autodiff on scalars and NumPy tensors, and RNNs whose BPTT falls out of the graph."""
__version__ = "0.1.0"
