"""``_windows``: output sizes with explicit padding (as torch's convolution computes them) and
the per-tap strided slices, against numpy indexing."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from torsh_fn.kernels._windows import out_size, tap_slices


@pytest.mark.parametrize("length, k, s, pad, d", [(9, 3, 2, (1, 1), 1), (10, 4, 3, (2, 0), 2),
                                                  (5, 5, 1, (0, 0), 1), (7, 2, 4, (0, 3), 3)])
def test_out_size_matches_torch_convolution(length, k, s, pad, d):
    y = TF.conv1d(TF.pad(torch.zeros(1, 1, length), pad), torch.zeros(1, 1, k), stride=s,
                  dilation=d)
    assert out_size(length, k, s, pad, d) == y.shape[-1]


def test_tap_slices_read_what_each_kernel_offset_reads(rng):
    xp = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    kernel, stride, dilation = (3, 2), (2, 3), (2, 1)
    out = [out_size(n, k, s, (0, 0), d) for n, k, s, d in zip((9, 8), kernel, stride, dilation)]
    offsets = list(itertools.product(*(range(k) for k in kernel)))
    taps = tap_slices(jnp.asarray(xp), 2, offsets, stride, dilation, out)
    assert len(taps) == len(offsets)
    for (i, j), tap in zip(offsets, taps):
        want = xp[..., i * dilation[0]::stride[0], j * dilation[1]::stride[1]]
        want = want[..., :out[0], :out[1]]
        np.testing.assert_array_equal(tap, want)
