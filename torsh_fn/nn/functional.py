"""``torch.nn.functional`` for JAX: pure ops with PyTorch's names, arguments, defaults and numerics.

Every function here is pure (safe under ``jit``, ``grad``, ``vmap``). The ops live in family
modules under ``torsh_fn.nn._functional``; this module is the one public face.
"""

from ._functional import activation as _activation
from ._functional import attention as _attention
from ._functional import conv as _conv
from ._functional import distance as _distance
from ._functional import dropout as _dropout
from ._functional import linear as _linear
from ._functional import loss as _loss
from ._functional import norm as _norm
from ._functional import pooling as _pooling
from ._functional import sparse as _sparse
from ._functional import vision as _vision
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

__all__ = [
    name
    for family in (_activation, _attention, _conv, _distance, _dropout, _linear, _loss, _norm,
                   _pooling, _sparse, _vision)
    for name in family.__all__
]
