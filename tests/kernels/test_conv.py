"""kernels.conv / conv_transpose: no Pallas kernel, so impl="pallas" is refused by name."""

import jax.numpy as jnp
import pytest

from torsh_fn.kernels.conv import conv, conv_transpose


def test_conv_ops_refuse_pallas():
    x, w = jnp.ones((1, 1, 5)), jnp.ones((1, 1, 3))
    with pytest.raises(ValueError, match="conv: has no Pallas kernel"):
        conv(x, w, (1,), [(0, 0)], (1,), impl="pallas")
    with pytest.raises(ValueError, match="conv_transpose: has no Pallas kernel"):
        conv_transpose(x, w, (1,), (0,), (0,), (1,), impl="pallas")
