"""The layer library, one family a file; ``torsh_fn.nn`` re-exports every class here."""

from . import activation as _activation
from . import attention as _attention
from . import container as _container
from . import conv as _conv
from . import dropout as _dropout
from . import flatten as _flatten
from . import linear as _linear
from . import loss as _loss
from . import normalization as _normalization
from . import padding as _padding
from . import pixelshuffle as _pixelshuffle
from . import pooling as _pooling
from . import rnn as _rnn
from . import sparse as _sparse
from . import transformer as _transformer
from . import upsampling as _upsampling
from .activation import *  # noqa: F403
from .attention import *  # noqa: F403
from .container import *  # noqa: F403
from .conv import *  # noqa: F403
from .dropout import *  # noqa: F403
from .flatten import *  # noqa: F403
from .linear import *  # noqa: F403
from .loss import *  # noqa: F403
from .normalization import *  # noqa: F403
from .padding import *  # noqa: F403
from .pixelshuffle import *  # noqa: F403
from .pooling import *  # noqa: F403
from .rnn import *  # noqa: F403
from .sparse import *  # noqa: F403
from .transformer import *  # noqa: F403
from .upsampling import *  # noqa: F403

__all__ = [
    name
    for family in (_activation, _attention, _container, _conv, _dropout, _flatten, _linear,
                   _loss, _normalization, _padding, _pixelshuffle, _pooling, _rnn, _sparse,
                   _transformer, _upsampling)
    for name in family.__all__
]
