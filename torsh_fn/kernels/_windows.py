"""Sliding windows over the last ``nd`` dims, as the CPU lowerings of convolution and pooling
take them: the output size with explicit ``(lo, hi)`` padding, and one strided slice per tap.

Example:
    >>> xp = jax.numpy.arange(6.0)[None]                # one row, already padded
    >>> [t.tolist() for t in tap_slices(xp, 1, [(0,), (1,)], (2,), (1,), (3,))]
    [[[0.0, 2.0, 4.0]], [[1.0, 3.0, 5.0]]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
from jax import lax

Pairs = Sequence[tuple[int, int]]


def out_size(length: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int) -> int:
    """How many windows fit along one dim of ``length`` padded by ``pad = (lo, hi)``."""
    return (length + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def tap_slices(xp: jax.Array, nd: int, offsets: Iterable[Sequence[int]], stride: Sequence[int],
               dilation: Sequence[int], out: Sequence[int]) -> list[jax.Array]:
    """For each kernel offset in ``offsets``, the strided slice of the padded ``xp`` that the
    offset reads in every window: each of shape (*xp.shape[:-nd], *out)."""
    lead = xp.ndim - nd
    slices = []
    for offset in offsets:
        start = [t * d for t, d in zip(offset, dilation)]
        limit = [st + (o - 1) * s + 1 for st, o, s in zip(start, out, stride)]
        slices.append(lax.slice(xp, (0,) * lead + tuple(start), xp.shape[:lead] + tuple(limit),
                                (1,) * lead + tuple(stride)))
    return slices
