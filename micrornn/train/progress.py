"""Progress bars: tqdm's notebook widget inside Jupyter when ipywidgets is installed, else the plain text
bar, never the "IProgress not found" warning that ``tqdm.auto`` prints in a notebook without ipywidgets."""
from __future__ import annotations

import importlib.util
import sys

from tqdm.std import tqdm as text_bar


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython already imported and running as a kernel)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None:
        return False
    return type(shell).__name__ == "ZMQInteractiveShell" or "IPKernelApp" in getattr(shell, "config", {})


def bar_class():
    """The tqdm class to use here: the notebook bar only when it can draw (a kernel with ipywidgets)."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_bar
        return notebook_bar
    return text_bar


def progress_bar(*args, **kwargs):
    """A tqdm progress bar of the right kind (same arguments as ``tqdm``)."""
    return bar_class()(*args, **kwargs)


def write(message: str) -> None:
    """Print a line without breaking a running text bar."""
    text_bar.write(message)
