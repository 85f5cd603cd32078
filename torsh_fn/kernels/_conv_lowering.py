"""Convolution lowerings besides XLA's NCHW one, chosen by ``conv(..., impl="auto")``.

``conv_patches``: convolution as patches times a matrix, for the CPU. XLA's CPU convolution is
slow where the input has few channels (its weight gradient) or the output few positions per image
(ResNet's late stages: a 2x2 or 1x1 image with 256-512 channels), and there matrix products do
better. The patch matrix is built from one strided slice of the padded input per kernel tap. For
small images it is channel-major, ``(C_in / groups * taps, N * out_positions)`` (Caffe's im2col
layout), and one product with the weight, ``(C_out / groups, C_in / groups * taps)``, gives the
output ``(C_out, N, *out)``; for larger ones it is per image, ``(N, C_in * taps, out_positions)``,
and a batched product gives ``(N, C_out, out_positions)``, already in NCHW order (a first layer on
grey images, batch 128 at 28x28, forward with bias and ReLU and weight gradient: 1.4x faster).
Taps that only ever read padding (a 3x3 kernel on a 1x1 image) are left out, so such a
convolution is a plain matrix product. The gradient is JAX's own: the transposed product, and the
slices' transposes (pads) summed back into the input.

``conv_channels_last``: the same convolution run by XLA in (N, *spatial, C) / (*kernel, I, O)
layout between two transposes, which XLA folds into its neighbours on a GPU, where NHWC is the
fast layout for cuDNN.

Both take an ``epilogue`` (``conv_bias_act``'s bias and activation): it is applied to the
product in the layout it comes out in, before the transpose to (N, C_out, *spatial), so that XLA
can fuse it into that transpose instead of adding a pass over the result. (The per-image patch
product needs no transpose: after it the epilogue is one elementwise pass.)

``prefers_patches`` is the rule ``conv`` uses on the CPU; ``benchmarks/conv.py`` measures it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._windows import Pairs, out_size, tap_slices

__all__ = ["Epilogue", "conv_channels_last", "conv_patches", "prefers_patches"]

# (result, its channel axis) -> result: what runs on a convolution's output before it is stored
Epilogue = Callable[[jax.Array, int], jax.Array]


def _no_epilogue(y: jax.Array, channel_axis: int) -> jax.Array:
    return y


# Above this many output positions per image, ungrouped patches are multiplied image by image
# (the output lands in NCHW order); below, as one product over the whole batch (channel-major,
# then transposed), which keeps the matrix product large where images are small.
PER_IMAGE_POSITIONS = 64


def _live_taps(length: int, kernel: int, stride: int, lo: int, dilation: int,
               out: int) -> list[int]:
    """The kernel taps along one dim that read at least one input element (not only padding)."""
    return [t for t in range(kernel)
            if any(0 <= o * stride + t * dilation - lo < length for o in range(out))]


def conv_patches(x: jax.Array, weight: jax.Array, stride: Sequence[int], padding: Pairs,
                 dilation: Sequence[int], groups: int = 1,
                 epilogue: Epilogue = _no_epilogue) -> jax.Array:
    """Cross-correlation of ``x`` (N, C_in, *s) with ``weight`` (C_out, C_in/groups, *k).

    Same arguments and result as ``conv_reference``; computed as matrix products of the weight
    with the input's patch matrix: one per image where images have more than
    ``PER_IMAGE_POSITIONS`` output positions (ungrouped), else one over the batch per group.
    ``epilogue`` runs on the products' result (see the module's docstring).

    Example:
        >>> conv_patches(jnp.ones((1, 1, 5)), jnp.ones((1, 1, 3)), (1,), [(0, 0)], (1,))
        Array([[[3., 3., 3.]]], dtype=float32)
    """
    n, _, *spatial = x.shape
    c_out, c_group, *kernel = weight.shape
    out = [out_size(*args) for args in zip(spatial, kernel, stride, padding, dilation)]
    taps = [_live_taps(length, k, s, lo, d, o)
            for length, k, s, (lo, _), d, o in zip(spatial, kernel, stride, padding, dilation, out)]
    w = weight.astype(x.dtype)
    for axis, (live, k) in enumerate(zip(taps, kernel)):
        if len(live) < k:
            w = jnp.take(w, np.asarray(live), axis=2 + axis)
    n_taps = math.prod(len(live) for live in taps)
    positions = math.prod(out)
    if groups == 1 and positions > PER_IMAGE_POSITIONS:
        # One product per image, [C_out, C_in * taps] x [C_in * taps, positions], which lands
        # in NCHW order: no transposes of the input or of the (large) output.
        xp = jnp.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in padding])
        cols = tap_slices(xp, len(spatial), itertools.product(*taps), stride, dilation, out)
        patches = jnp.stack(cols, axis=2).reshape(n, c_group * n_taps, positions)
        w = jnp.broadcast_to(w.reshape(1, c_out, c_group * n_taps), (n, c_out, c_group * n_taps))
        y = lax.dot_general(w, patches, (((2,), (1,)), ((0,), (0,))))
        return epilogue(y, 1).reshape(n, c_out, *out)
    # [groups, C_in/groups, N, *s], padded; one strided slice per live tap: [.., N, *out]
    xt = jnp.moveaxis(x, 1, 0).reshape(groups, c_group, n, *spatial)
    xt = jnp.pad(xt, [(0, 0)] * 3 + [tuple(p) for p in padding])
    cols = tap_slices(xt, len(spatial), itertools.product(*taps), stride, dilation, out)
    # [groups, C_in/groups * taps, N * prod(out)] times [groups, C_out/groups, C_in/groups * taps]
    patches = jnp.stack(cols, axis=2).reshape(groups, c_group * n_taps, -1)
    w = w.reshape(groups, c_out // groups, c_group * n_taps)
    y = lax.dot_general(w, patches, (((2,), (1,)), ((0,), (0,))))
    return jnp.moveaxis(epilogue(y.reshape(c_out, n, *out), 0), 0, 1)


def prefers_patches(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                    padding: Pairs, dilation: Sequence[int], groups: int) -> bool:
    """The CPU rule: patches times a matrix where XLA's convolution measured slower.

    Measured under ``torsh_fn.jit``'s CPU compile options (``torsh_fn._xla_options``: XLA's own
    multi-threaded convolutions, YNNPACK's products), forward and backward of input and weight on
    2 cores: ungrouped convolutions with a kernel larger than 1x1 and at most 4 output positions
    per image (ResNet-18's last two stages at 32x32 input: 14-48 ms in XLA against 0.9-2.0 ms),
    or with a patch of at most 32 elements (``C_in * prod(kernel)``) over at least 64 output
    positions (a CNN's first 3x3 layer on grey images, batch 128 at 28x28: 2.3 against 3.3 ms;
    ``seed_cnn``'s at 8x8, batch 64: 0.15 against 0.18 ms, its whole step 2.6-4% faster).
    Elsewhere XLA's convolution was as fast or 1.2-2.4x faster (``seed_cnn``'s later layers,
    ResNet-18's stem and first two stages, 1x1 kernels; ``benchmarks/results/train_step.md``,
    "Run 7").
    """
    if groups != 1:
        return False
    out = [out_size(*args) for args in zip(x_shape[2:], w_shape[2:], stride, padding, dilation)]
    positions, patch = math.prod(out), math.prod(w_shape[1:])
    return ((positions <= 4 and math.prod(w_shape[2:]) > 1)
            or (patch <= 32 and positions >= 64))


def conv_channels_last(x: jax.Array, weight: jax.Array, stride: Sequence[int], padding: Pairs,
                       dilation: Sequence[int], groups: int = 1,
                       epilogue: Epilogue = _no_epilogue) -> jax.Array:
    """``conv_reference``'s convolution, run by XLA in channels-last layout.

    ``x`` (N, C_in, *s) and ``weight`` (C_out, C_in/groups, *k) are transposed to (N, *s, C_in)
    and (*k, C_in/groups, C_out); the result (N, *s', C_out) goes through ``epilogue`` and is
    transposed back to (N, C_out, *s').

    Example:
        >>> conv_channels_last(jnp.ones((1, 1, 5)), jnp.ones((1, 1, 3)), (1,), [(0, 0)], (1,))
        Array([[[3., 3., 3.]]], dtype=float32)
    """
    nd = x.ndim - 2
    spatial = "DHW"[3 - nd:]
    layout = "N" + spatial + "C"
    numbers = lax.conv_dimension_numbers((1,) * (nd + 2), (1,) * (nd + 2),
                                         (layout, spatial + "IO", layout))
    y = lax.conv_general_dilated(
        jnp.moveaxis(x, 1, -1), jnp.moveaxis(weight.astype(x.dtype), (0, 1), (-1, -2)),
        tuple(stride), list(padding), rhs_dilation=tuple(dilation), dimension_numbers=numbers,
        feature_group_count=groups)
    return jnp.moveaxis(epilogue(y, -1), -1, 1)
