"""kernels.pooling: output sizes as torch computes them."""

import pytest
import torch
import torch.nn.functional as TF

from torsh_fn.kernels.pooling import pool_output_size


@pytest.mark.parametrize("length, k, s, p, d, ceil", [(7, 3, 2, 1, 1, True), (8, 2, 3, 0, 2, True),
                                                      (5, 5, 1, 2, 1, False)])
def test_pool_output_size_matches_torch(length, k, s, p, d, ceil):
    out = TF.max_pool1d(torch.zeros(1, 1, length), k, s, p, d, ceil)
    assert pool_output_size(length, k, s, p, d, ceil) == out.shape[-1]
