"""Alias of micrornn.train.data (kept so that `import micrornn.data` goes on working)."""
import sys

from micrornn.train import data as _module

sys.modules[__name__] = _module
