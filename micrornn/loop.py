"""Alias of micrornn.train.loop (kept so that `import micrornn.loop` goes on working)."""
import sys

from micrornn.train import loop as _module

sys.modules[__name__] = _module
