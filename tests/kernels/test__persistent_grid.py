"""The persistent grid's deal on the host: every tile once, in order, balanced by work; and the
kernels' decode of a dealt tile (the kernels that walk it run in their own tests)."""

import pytest

from torsh_fn.kernels._persistent_grid import dealt_tile, tile_table

CAUSAL_32 = tuple(range(33, 1, -1))  # B4 H16 S4096's causal query tiles: key blocks + 1


@pytest.mark.parametrize("batches, heads, work, ctas", [
    (4, 16, CAUSAL_32, 132),  # at the default tiles, on an H100's or H200's SMs
    (4, 16, (33,) * 32, 132),  # without the mask
    (2, 3, (4, 3, 2), 5),
    (1, 4, (6, 6), 7),
    (4, 2, (3, 9, 1, 4, 4), 3),  # work in no order
    (3, 5, tuple(range(15, 1, -2)), 1000),  # more CTAs than tiles: one tile each
])
def test_tile_table_deals_every_tile_once_and_evenly(batches, heads, work, ctas):
    """Each CTA walks its tiles in the grid's order; together they take every tile once; and no
    CTA's work exceeds another's by more than one tile's, what dealing each tile to the
    least-loaded CTA guarantees (a round-robin deal of the causal tiles misses it by far)."""
    table = tile_table(batches, heads, work, ctas)
    total = batches * heads * len(work)
    assert table.shape[0] == min(ctas, total)
    dealt = [table[cta, 1:1 + table[cta, 0]].tolist() for cta in range(table.shape[0])]
    assert all(tiles == sorted(tiles) for tiles in dealt)
    assert sorted(u for tiles in dealt for u in tiles) == list(range(total))

    def units(u):  # tiles run heads first, then a head's tiles in work's order, then batches
        return work[(u // heads) % len(work)]

    loads = [sum(map(units, tiles)) for tiles in dealt]
    assert max(loads) - min(loads) <= max(work)


def test_dealt_tile_decodes_tile_tables_order():
    """The kernels' decode of a dealt tile inverts ``tile_table``'s order: heads first, then a
    head's tiles, then batches."""
    batches, heads, tiles_per_head = 3, 5, 4
    decoded = [tuple(map(int, dealt_tile(u, heads, tiles_per_head)))
               for u in range(batches * heads * tiles_per_head)]
    assert decoded == [(b, h, i) for b in range(batches) for i in range(tiles_per_head)
                       for h in range(heads)]
