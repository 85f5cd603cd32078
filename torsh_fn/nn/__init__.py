"""The PyTorch face's layers: ``torsh_fn.nn`` mirrors ``torch.nn``.

``nn.functional`` holds the pure ops; ``nn.Module`` and the layer library build on them.
"""

from . import functional as functional
from .parameter import Parameter as Parameter
