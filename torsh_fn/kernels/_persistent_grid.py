"""Persistent grids for Mosaic GPU kernels: one CTA per SM walks a list of tiles that the host
deals it, each tile to the CTA with the least work so far (what the hardware does with a grid
of one tile per CTA), so that no CTA waits for a next tile's first loads or is launched after
the first wave. ``tile_table`` deals the lists; ``walk_dealt_tiles`` walks a CTA's list in a
kernel. The flash attention forward (causal) and backward run on it.

Example (on the host, then in a kernel over the grid axis ``"cta"``):
    >>> table = tile_table(batches=2, heads=4, work=(3, 2, 1), ctas=5)  # (5, 1 + most tiles)
"""

from __future__ import annotations

import functools
import heapq

import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["dealt_tile", "tile_table", "walk_dealt_tiles"]


def _deal_tiles(work: tuple[int, ...], ctas: int) -> np.ndarray:
    """Deals tiles of ``work`` units each, in order, to ``ctas`` CTAs, each tile to the
    CTA with the least work so far (what the hardware does with a grid of one tile per CTA);
    (ctas, 1 + most tiles a CTA takes) int32: each CTA's count, then its tiles in order."""
    loads = [(0, cta) for cta in range(ctas)]
    dealt = [[] for _ in range(ctas)]
    for tile, steps in enumerate(work):
        load, cta = heapq.heappop(loads)
        dealt[cta].append(tile)
        heapq.heappush(loads, (load + steps, cta))
    table = np.zeros((ctas, 1 + max(map(len, dealt))), np.int32)
    for cta, tiles in enumerate(dealt):
        table[cta, 0] = len(tiles)
        table[cta, 1:1 + len(tiles)] = tiles
    return table


@functools.lru_cache(maxsize=64)
def tile_table(batches: int, heads: int, work: tuple[int, ...], ctas: int) -> np.ndarray:
    """``_deal_tiles``' table, for at most ``ctas`` CTAs, of ``batches * heads * len(work)``
    tiles in the order heads first, then a head's tiles in the order of ``work`` (each one's
    work units), then batches, so that concurrent tiles share keys and values in L2;
    ``walk_dealt_tiles`` walks it."""
    flat = tuple(units for _ in range(batches) for units in work for _ in range(heads))
    table = _deal_tiles(flat, min(ctas, len(flat)))
    table.flags.writeable = False  # cached: shared by every call of these shapes
    return table


def walk_dealt_tiles(tiles_ref, heads: int, tiles_per_head: int, one_tile) -> None:
    """In a kernel of a persistent grid (axis ``"cta"``): ``one_tile(batch, head, i,
    first_step)`` -> ``first_step`` of the next, for each tile that ``tile_table``'s table
    (``tiles_ref``) deals this CTA, ``i`` its place among its head's tiles; ``first_step``
    starts at 0 (a ring's steps taken by earlier tiles)."""
    cta = lax.axis_index("cta")

    def by_index(n, first_step):
        return one_tile(*dealt_tile(tiles_ref[cta, 1 + n], heads, tiles_per_head), first_step)

    lax.fori_loop(0, tiles_ref[cta, 0], by_index, jnp.int32(0))


def dealt_tile(u, heads: int, tiles_per_head: int):
    """Tile ``u`` in ``tile_table``'s order -> (batch, head, its place among its head's tiles);
    on ints or traced ints."""
    return u // (heads * tiles_per_head), lax.rem(u, heads), lax.rem(u // heads, tiles_per_head)
