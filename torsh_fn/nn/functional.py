"""``torch.nn.functional`` for JAX: pure ops with PyTorch's names, arguments, defaults and numerics.

Every function here is pure (safe under ``jit``, ``grad``, ``vmap``). The ops live in family
modules under ``torsh_fn.nn._functional``; this module is the one public face.
"""

from ._functional.activation import *  # noqa: F403
from ._functional.attention import *  # noqa: F403
from ._functional.conv import *  # noqa: F403
from ._functional.distance import *  # noqa: F403
from ._functional.dropout import *  # noqa: F403
from ._functional.linear import *  # noqa: F403
from ._functional.loss import *  # noqa: F403
from ._functional.norm import *  # noqa: F403
from ._functional.pooling import *  # noqa: F403
from ._functional.sparse import *  # noqa: F403
from ._functional.vision import *  # noqa: F403
from ._functional import (
    activation, attention, conv, distance, dropout, linear, loss, norm, pooling, sparse, vision,
)

__all__ = [
    name
    for family in (activation, attention, conv, distance, dropout, linear, loss, norm, pooling,
                   sparse, vision)
    for name in family.__all__
]
del activation, attention, conv, distance, dropout, linear, loss, norm, pooling, sparse, vision
