"""Pallas kernels for the hot ops, each beside its ``jax.numpy`` reference, with dispatch.

Every op takes ``impl="auto" | "pallas" | "xla"``: "xla" runs the reference, "pallas" the kernel
(in Pallas' interpreter where there is no GPU), "auto" the kernel only on a GPU and only where
``dispatch_table.json`` (written by ``benchmarks/kernels.py --sweep``) measured it faster.
``set_default_impl`` or ``TORSH_FN_KERNEL_IMPL`` forces one everywhere. The reductions live in
``torsh_fn.kernels.reductions`` (``sum``, ``mean``, ``amax``, ``amin``, ``var``), not at this
level, so they do not shadow Python's ``sum``.

This package imports only jax and numpy.
"""

from . import reductions as reductions
from ._dispatch import get_default_impl as get_default_impl
from ._dispatch import set_default_impl as set_default_impl
from .attention import attention as attention
from .batch_norm import batch_norm as batch_norm
from .bias_act import bias_act as bias_act
from .conv import conv as conv
from .conv import conv_bias_act as conv_bias_act
from .conv import conv_transpose as conv_transpose
from .cross_entropy import cross_entropy as cross_entropy
from .matmul import matmul as matmul
from .matmul import matmul_bias_act as matmul_bias_act
from .norm import add_layer_norm as add_layer_norm
from .norm import layer_norm as layer_norm
from .norm import rms_norm as rms_norm
from .pooling import avg_pool as avg_pool
from .pooling import max_pool as max_pool
from .softmax import log_softmax as log_softmax
from .softmax import softmax as softmax
