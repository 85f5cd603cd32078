"""Collectives inside shard_map over 8 devices (subprocess) against numpy; the host
(cross-process) forms with one process; two processes in test__process.py."""

from __future__ import annotations

import numpy as np
import pytest

from torsh_fn import distributed as dist

REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


@pytest.mark.parametrize("op", sorted(REDUCE))
def test_all_reduce_over_the_data_axis(eight, op):
    c = eight["collectives"]
    x = np.asarray(c["x"], np.float32)  # row i lives on device i
    np.testing.assert_allclose(c[op], REDUCE[op](x, axis=0, keepdims=True), rtol=1e-6)


def test_all_gather_and_broadcast_over_the_data_axis(eight):
    c = eight["collectives"]
    x = np.asarray(c["x"], np.float32)
    np.testing.assert_array_equal(c["gather"], x)
    np.testing.assert_array_equal(c["gather_tiled"], x)
    np.testing.assert_array_equal(c["broadcast"], np.broadcast_to(x[3], x.shape))


def test_host_collectives_with_one_process(eight):
    c = eight["collectives"]
    np.testing.assert_array_equal(c["host_reduce"], c["x"])
    assert c["host_gather_shape"] == [1, 8, 3]
    np.testing.assert_array_equal(c["host_broadcast"], c["x"])
    assert c["err_op"] == ("ValueError: all_reduce: op: expected one of ['avg', 'max', "
                           "'mean', 'min', 'sum'], got 'prod'")
    assert c["err_src"] == ("ValueError: broadcast: src: expected a process rank in [0, 0], "
                            "got 1")


def test_host_all_gather_layouts_here():
    x = np.arange(6).reshape(2, 3)
    assert dist.all_gather(x).shape == (1, 2, 3)
    assert dist.all_gather(x, dim=1).shape == (2, 1, 3)
    np.testing.assert_array_equal(dist.all_gather(x, tiled=True), x)
