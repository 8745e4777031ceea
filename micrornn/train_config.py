"""Alias of micrornn.train.config (kept so that `import micrornn.train_config` goes on working)."""
import sys

from micrornn.train import config as _module

sys.modules[__name__] = _module
