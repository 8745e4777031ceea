"""Alias of micrornn.train.plots (kept so that `import micrornn.plots` goes on working)."""
import sys

from micrornn.train import plots as _module

sys.modules[__name__] = _module
