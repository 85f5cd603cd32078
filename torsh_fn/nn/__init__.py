"""The PyTorch face's layers: ``torsh_fn.nn`` mirrors ``torch.nn``.

``nn.functional`` holds the pure ops; ``nn.Module``, ``nn.Parameter`` and the layer library
(``torsh_fn.nn.modules``, one family a file) build on them; ``nn.init`` has PyTorch's
initialisers and ``nn.utils`` gradient clipping.
"""

from . import functional as functional
from . import init as init
from . import utils as utils
from .module import Module as Module
from .module import StateDictError as StateDictError
from .modules import *  # noqa: F403
from .modules import __all__ as _layers
from .parameter import Parameter as Parameter

__all__ = ["Module", "Parameter", "StateDictError", "functional", "init", "utils", *_layers]
