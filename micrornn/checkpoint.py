"""Alias of micrornn.train.checkpoint (kept so that `import micrornn.checkpoint` goes on working)."""
import sys

from micrornn.train import checkpoint as _module

sys.modules[__name__] = _module
