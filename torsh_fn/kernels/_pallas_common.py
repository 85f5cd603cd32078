"""The seam between torsh_fn's kernels and Pallas: launch helpers shared by every kernel family.

Kernels here are written once against Pallas' Triton lowering, which runs on the GPU
(jax 0.11.x, CUDA) and in interpret mode on the CPU (jax 0.10.x), so the CPU tests exercise the
same kernel bodies; the Mosaic GPU kernels (``_mosaic_*``) run in the Mosaic GPU interpreter.
Everything version- or backend-specific about launching lives in this file.

Row kernels see one row of a ``(rows, n)`` array as 1-D refs; :func:`row_call` launches one
program per row by ``vmap``-ing a grid-less ``pallas_call`` over the rows (Pallas turns the
vmapped axis into the grid).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ._dispatch import compute_capability
from ._row_partition import partition_rows

MAX_ROW_BLOCK = 8192  # the widest row chunk a program holds in registers at once
HOPPER_SMS = 132  # the SM count assumed where no GPU is present (lowering, interpret mode)


def on_gpu() -> bool:
    """Whether the default backend is a GPU (Pallas kernels compile only there)."""
    return jax.default_backend() == "gpu"


def on_hopper() -> bool:
    """Whether the default device is a Hopper GPU (compute capability 9.x: wgmma, TMA), where
    the Mosaic GPU kernels run."""
    capability = compute_capability() if on_gpu() else None
    return capability is not None and capability.startswith("9.")


def sm_count() -> int:
    """The default device's SM count (``HOPPER_SMS`` where it has none: the CPU), what
    persistent Mosaic GPU kernels size their grids by."""
    return getattr(jax.devices()[0], "core_count", None) or HOPPER_SMS


def interpret_mode() -> bool:
    """Run kernels in Pallas' interpreter (no GPU: the CPU tests)."""
    return not on_gpu()


def mosaic_gpu_interpret_params() -> Any:
    """The ``interpret=`` value running a ``plgpu.kernel`` (Mosaic GPU) in Pallas' Mosaic GPU
    interpreter on the CPU: public in ``plgpu`` from jax 0.11, private in 0.10."""
    from jax.experimental.pallas import mosaic_gpu as plgpu_mosaic

    params = getattr(plgpu_mosaic, "InterpretGPUParams", None)
    if params is None:
        from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams as params
    return params()


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def row_block(n: int, max_block: int = MAX_ROW_BLOCK) -> int:
    """The chunk width for rows of length ``n``: the whole row if it fits, else ``max_block``."""
    return min(next_power_of_2(n), max_block)


# (kernel name, block width) -> warps per program, measured on an H100 by
# ``benchmarks/kernels.py --tune``; other widths use the heuristic below.
TUNED_WARPS: dict[tuple[str, int], int] = {
    ("softmax_fwd", 4096): 2,
    ("log_softmax_fwd", 4096): 4,
    ("softmax_bwd", 4096): 2,
    ("log_softmax_bwd", 4096): 8,
    ("layer_norm_fwd", 4096): 8,
    ("rms_norm_fwd", 4096): 8,
    ("layer_norm_bwd", 4096): 16,
    ("rms_norm_bwd", 4096): 8,
    ("cross_entropy_fwd", 4096): 8,
    ("cross_entropy_bwd", 4096): 16,
    ("row_sum", 4096): 4,
    ("row_var", 4096): 4,
    ("bias_gelu_fwd", 4096): 1,
}


# Where another GPU model's best differs from the H100's: JAX device_kind -> overrides, measured
# the same way (the H200's cross-entropy: fwd+bwd on 8192x32768 bf16 0.446 ms against 0.460 with
# the H100's 8 / 16 warps; benchmarks/results/kernels_h200.md).
TUNED_WARPS_BY_DEVICE: dict[str, dict[tuple[str, int], int]] = {
    "NVIDIA H200": {("cross_entropy_fwd", 4096): 4, ("cross_entropy_bwd", 4096): 8},
}


def num_warps_for(block: int, kernel: str) -> int:
    """Warps per program for ``kernel`` on blocks of ``block`` elements: the value tuned for this
    GPU model, else the H100's, else Triton's usual heuristic of a warp per 256 elements
    (between 1 and 16)."""
    key = (kernel, block)
    device = TUNED_WARPS_BY_DEVICE.get(jax.devices()[0].device_kind, {})
    return device.get(key, TUNED_WARPS.get(key, min(max(block // 256, 1), 16)))


def compiler_params(num_warps: int, num_stages: int) -> plgpu.CompilerParams:
    """Triton launch parameters: warps per program and the software-pipelining depth."""
    return plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)


def row_call(
    kernel: Callable[..., None],
    out_shapes: Sequence[jax.ShapeDtypeStruct],
    *,
    name: str,
    num_warps: int,
    row_inputs: Sequence[bool],
    num_stages: int = 1,
) -> Callable[..., Any]:
    """A function running ``kernel`` once per row of its inputs.

    Args:
        kernel: the kernel body on refs of one row: inputs then outputs.
        out_shapes: each output's shape and dtype *for one row* (``()`` for per-row scalars).
        row_inputs: for each input, whether it has a leading rows axis (True) or is shared by
            every row (False, e.g. a norm's weight).

    Under SPMD sharding each device runs the kernel on its own rows (see ``_row_partition``).
    """
    call = pl.pallas_call(
        kernel,
        out_shape=list(out_shapes),
        grid=(),
        interpret=interpret_mode(),
        compiler_params=compiler_params(num_warps, num_stages),
        name=name,
    )
    rows = jax.vmap(call, in_axes=tuple(0 if r else None for r in row_inputs))
    return partition_rows(rows, row_inputs)


def load_chunk(ref: Any, start: Any, block: int, n: int, other: float = 0.0) -> jax.Array:
    """Load ``ref[start : start + block]`` as float32, with ``other`` past the row's end."""
    cols = start + jnp.arange(block)
    return plgpu.load(ref.at[cols], mask=cols < n, other=other).astype(jnp.float32)


def store_chunk(ref: Any, start: Any, block: int, n: int, value: jax.Array) -> None:
    cols = start + jnp.arange(block)
    plgpu.store(ref.at[cols], value.astype(ref.dtype), mask=cols < n)


def chunk_count(n: int, block: int) -> int:
    return pl.cdiv(n, block)


def as_rows(x: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
    """``x`` as ``(rows, n)`` and the leading shape to restore."""
    lead = x.shape[:-1]
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x, lead


def f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32)
