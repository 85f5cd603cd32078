"""Pallas kernels for the hot ops, each beside its ``jax.numpy`` reference, with dispatch.

This package imports only jax and numpy.
"""

from ._dispatch import get_default_impl as get_default_impl
from ._dispatch import set_default_impl as set_default_impl
from .attention import attention as attention
from .conv import conv as conv
from .conv import conv_transpose as conv_transpose
from .cross_entropy import cross_entropy as cross_entropy
from .norm import layer_norm as layer_norm
from .norm import rms_norm as rms_norm
from .pooling import avg_pool as avg_pool
from .pooling import max_pool as max_pool
from .softmax import log_softmax as log_softmax
from .softmax import softmax as softmax
