"""torsh_fn: a deep-learning library for JAX with a functional face and a PyTorch face.

The top level holds what both faces share: array creation with PyTorch's signatures, a set of
PyTorch-named array functions, JAX's transforms, ``jit`` (``jax.jit`` that also takes Modules
and Optimizers) and ``backward``, seeds and keys, devices, and save/load.
Everything else a program needs from arrays comes from ``jax.numpy`` directly: torsh_fn returns
plain ``jax.Array``s and does not wrap all of NumPy's surface.
"""

from . import cuda as cuda
from . import func as func
from . import random as random
from ._backward import backward
from ._creation import (
    arange,
    as_tensor,
    bernoulli,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    logspace,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from ._device import device, to_device
from ._dtypes import (
    bfloat16,
    bool,
    cdouble,
    cfloat,
    complex64,
    complex128,
    double,
    float,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int,
    int8,
    int16,
    int32,
    int64,
    is_floating_point,
    long,
    set_default_dtype,
    short,
    uint8,
)
from ._jit import jit
from ._ops import (
    DimensionError,
    allclose,
    amax,
    amin,
    argmax,
    argmin,
    bmm,
    cat,
    chunk,
    clamp,
    clip,
    concat,
    concatenate,
    cumsum,
    einsum,
    flatten,
    gather,
    index_select,
    isclose,
    logsumexp,
    masked_fill,
    matmul,
    max,
    mean,
    min,
    mm,
    movedim,
    narrow,
    numel,
    outer,
    permute,
    prod,
    reshape,
    return_types,
    sort,
    split,
    squeeze,
    stack,
    std,
    sum,
    swapaxes,
    swapdims,
    topk,
    transpose,
    tril,
    triu,
    unflatten,
    unsqueeze,
    var,
    where,
)
from ._transforms import (
    checkpoint,
    enable_grad,
    grad,
    hessian,
    inference_mode,
    is_grad_enabled,
    jacfwd,
    jacrev,
    no_grad,
    set_grad_enabled,
    value_and_grad,
    vmap,
)
from ._version import __version__ as __version__
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .serialization import load, save

_SUBPACKAGES = ("amp", "data", "distributed", "kernels", "models", "nn", "optim", "utils")


def __getattr__(name: str):
    """``torsh_fn.nn`` etc. without an explicit import, as ``torch.nn``; imported on first use."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
