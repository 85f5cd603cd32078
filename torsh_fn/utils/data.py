"""``torsh_fn.utils.data`` is :mod:`torsh_fn.data` under ``torch.utils.data``'s name, so that
``from torch.utils.data import DataLoader`` ports by changing ``torch`` to ``torsh_fn``."""

from ..data import *  # noqa: F403
from ..data import __all__ as __all__
