"""Alias of micrornn.train.sample (kept so that `import micrornn.sample` goes on working)."""
import sys

from micrornn.train import sample as _module

sys.modules[__name__] = _module
