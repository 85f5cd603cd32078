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

``prefers_patches`` is the rule ``conv`` uses on the CPU; ``benchmarks/conv.py`` measures it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._windows import Pairs, out_size, tap_slices

__all__ = ["conv_channels_last", "conv_patches", "prefers_patches"]

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
                 dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """Cross-correlation of ``x`` (N, C_in, *s) with ``weight`` (C_out, C_in/groups, *k).

    Same arguments and result as ``conv_reference``; computed as matrix products of the weight
    with the input's patch matrix: one per image where images have more than
    ``PER_IMAGE_POSITIONS`` output positions (ungrouped), else one over the batch per group.

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
        return y.reshape(n, c_out, *out)
    # [groups, C_in/groups, N, *s], padded; one strided slice per live tap: [.., N, *out]
    xt = jnp.moveaxis(x, 1, 0).reshape(groups, c_group, n, *spatial)
    xt = jnp.pad(xt, [(0, 0)] * 3 + [tuple(p) for p in padding])
    cols = tap_slices(xt, len(spatial), itertools.product(*taps), stride, dilation, out)
    # [groups, C_in/groups * taps, N * prod(out)] times [groups, C_out/groups, C_in/groups * taps]
    patches = jnp.stack(cols, axis=2).reshape(groups, c_group * n_taps, -1)
    w = w.reshape(groups, c_out // groups, c_group * n_taps)
    y = lax.dot_general(w, patches, (((2,), (1,)), ((0,), (0,))))
    return jnp.moveaxis(y.reshape(c_out, n, *out), 0, 1)


def prefers_patches(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                    padding: Pairs, dilation: Sequence[int], groups: int) -> bool:
    """The CPU rule: patches times a matrix where XLA's convolution measured slower.

    That is, ungrouped convolutions with at most 4 output positions per image (ResNet-18's last
    two stages at 32x32 input: 20-95 ms forward and backward in XLA against 0.8-2.5 ms), or with
    a patch of at most 32 elements (``C_in * prod(kernel)``) over more than 64 output positions
    (a CNN's first 3x3 layer on grey or RGB images: 11.6 against 12.8 ms for 1 -> 32 channels,
    batch 128 at 28x28), or at most 64 output positions with a patch matrix of at most 2**21
    elements (``seed_cnn``'s 8x8 and 4x4 layers, batch 64: 1.8 against 2.3 ms and 1.06 against
    1.16 ms forward and backward, the whole training step 4% faster; ResNet-18's stride-2 8x8
    layers 1.1-1.2x). Elsewhere (ResNet-18's 64-channel 8x8 layer, whose 2.4M-element patch
    matrix made its whole step 15% slower; larger images with more channels; ResNet's 7x7 stem)
    XLA's convolution measured as fast or up to 1.6x faster (``benchmarks/results/conv_cpu.md``,
    ``benchmarks/results/train_step.md``).
    """
    if groups != 1:
        return False
    out = [out_size(*args) for args in zip(x_shape[2:], w_shape[2:], stride, padding, dilation)]
    positions, patch = math.prod(out), math.prod(w_shape[1:])
    return (positions <= 4 or (patch <= 32 and positions > 64)
            or (positions <= 64 and x_shape[0] * patch * positions <= 2**21))


def conv_channels_last(x: jax.Array, weight: jax.Array, stride: Sequence[int], padding: Pairs,
                       dilation: Sequence[int], groups: int = 1) -> jax.Array:
    """``conv_reference``'s convolution, run by XLA in channels-last layout.

    ``x`` (N, C_in, *s) and ``weight`` (C_out, C_in/groups, *k) are transposed to (N, *s, C_in)
    and (*k, C_in/groups, C_out); the result (N, *s', C_out) is transposed back to (N, C_out, *s').

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
    return jnp.moveaxis(y, -1, 1)
