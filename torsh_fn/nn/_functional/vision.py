"""nn.functional: padding, resampling (interpolate, grid_sample, affine_grid), pixel shuffles.

Sampling positions and weights follow PyTorch's CPU kernels (computed in float32 on the host from
the static shapes), so ``nearest`` picks the same pixels and the linear/cubic weights match.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .pooling import adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d

__all__ = [
    "affine_grid", "channel_shuffle", "grid_sample", "interpolate", "pad", "pixel_shuffle",
    "pixel_unshuffle", "upsample", "upsample_bilinear", "upsample_nearest",
]

_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_JNP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(input: jax.Array, pad: Sequence[int], mode: str = "constant",
        value: float | None = None) -> jax.Array:
    """Pad the trailing dims: ``pad = (left_last, right_last, left_2nd_last, ...)``.

    Modes: "constant" (``value``, default 0; negative pads crop), "reflect" (mirror without the
    edge), "replicate" (repeat the edge), "circular" (wrap around). The non-constant modes pad
    the last 1-3 dims of an input with one or two more dims, as PyTorch.

    Example:
        >>> pad(jnp.arange(3.0)[None], (2, 1), mode="reflect")
        Array([[2., 1., 0., 1., 2., 1.]], dtype=float32)
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) > 2 * input.ndim:
        raise ValueError(f"pad: pad must have an even length of at most 2 * input.ndim = "
                         f"{2 * input.ndim}, got {pad}")
    n = len(pad) // 2
    pairs = [(0, 0)] * (input.ndim - n) + [(pad[2 * i], pad[2 * i + 1]) for i in reversed(range(n))]
    if mode == "constant":
        fill = jnp.asarray(0 if value is None else value, input.dtype)
        return jax.lax.pad(input, fill, [(lo, hi, 0) for lo, hi in pairs])
    if not 1 <= n <= 3 or input.ndim not in (n + 1, n + 2):
        raise ValueError(f"pad: mode={mode!r} pads the last 1-3 dims of an input with 1 or 2 more "
                         f"dims, got pad={pad} for input shape {input.shape}")
    if min(pad) < 0:
        raise ValueError(f"pad: negative padding needs mode='constant', got pad={pad}")
    for (lo, hi), size in zip(pairs, input.shape):
        if mode == "reflect" and max(lo, hi) >= size:
            raise ValueError(f"pad: reflect padding must be smaller than the padded dim, got "
                             f"pad={pad} for input shape {input.shape}")
        if mode == "circular" and max(lo, hi) > size:
            raise ValueError(f"pad: circular padding must be at most the padded dim, got "
                             f"pad={pad} for input shape {input.shape}")
    return jnp.pad(input, pairs, mode=_JNP_PAD_MODE[mode])


# ----------------------------------------------------------------------------- interpolate

_INTERP_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}
_INTERP_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_CUBIC_A = -0.75


def _scale(size_in: int, size_out: int, align_corners: bool, scale: float | None) -> np.float32:
    """PyTorch's ``area_pixel_compute_scale`` in float32."""
    if align_corners:
        return np.float32((size_in - 1) / (size_out - 1)) if size_out > 1 else np.float32(0)
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(size_in) / np.float32(size_out)


def _source(scale: np.float32, size_out: int, align_corners: bool, cubic: bool) -> np.ndarray:
    dst = np.arange(size_out, dtype=np.float32)
    if align_corners:
        return scale * dst
    src = scale * (dst + np.float32(0.5)) - np.float32(0.5)
    return src if cubic else np.maximum(src, np.float32(0))


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    def near(x):  # |x| <= 1
        return ((_CUBIC_A + 2) * x - (_CUBIC_A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((_CUBIC_A * x - 5 * _CUBIC_A) * x + 8 * _CUBIC_A) * x - 4 * _CUBIC_A

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1).astype(np.float32)


def _taps(mode: str, size_in: int, size_out: int, align_corners: bool, scale: float | None):
    """Input indices (size_out, T) and weights (size_out, T) along one dim."""
    s = _scale(size_in, size_out, align_corners and mode not in ("nearest", "nearest-exact"),
               scale)
    dst = np.arange(size_out, dtype=np.float32)
    if mode in ("nearest", "nearest-exact"):
        offset = np.float32(0.5) if mode == "nearest-exact" else np.float32(0)
        idx = np.minimum(np.floor((dst + offset) * s).astype(np.int64), size_in - 1)
        return idx[:, None], np.ones((size_out, 1), np.float32)
    if mode == "bicubic":
        src = _source(s, size_out, align_corners, cubic=True)
        base = np.floor(src)
        idx = np.clip(base[:, None].astype(np.int64) + np.arange(-1, 3), 0, size_in - 1)
        return idx, _cubic_weights(src - base)
    src = _source(s, size_out, align_corners, cubic=False)
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < size_in - 1)
    lam = np.clip(src - i0, 0, 1).astype(np.float32)
    return np.stack([i0, i1], -1), np.stack([1 - lam, lam], -1)


def _aa_filter(mode: str, x: np.ndarray) -> np.ndarray:
    """PyTorch's antialiasing filters: a triangle (bilinear), Keys' cubic with a = -0.5."""
    x = np.abs(x)
    if mode == "linear":
        return np.where(x < 1, 1 - x, 0)
    a = -0.5
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0))


def _taps_antialias(mode: str, size_in: int, size_out: int, align_corners: bool,
                    scale: float | None):
    """Antialiased taps: the filter is stretched by the downscale factor, weights sum to 1."""
    s = float(_scale(size_in, size_out, align_corners, scale))
    support = (2 if mode == "linear" else 4) * 0.5 * max(s, 1.0)
    inv = 1.0 / s if s >= 1.0 else 1.0
    center = s * (np.arange(size_out) + 0.5)
    lo = np.maximum((center - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((center + support + 0.5).astype(np.int64), size_in)
    j = np.arange((hi - lo).max())
    idx = lo[:, None] + j[None, :]
    w = _aa_filter(mode, (idx - center[:, None] + 0.5) * inv) * (idx < hi[:, None])
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total != 0, w / np.where(total != 0, total, 1), 0)
    return np.minimum(idx, size_in - 1), w.astype(np.float32)


def _resample_dim(x: jax.Array, axis: int, idx: np.ndarray, weights: np.ndarray) -> jax.Array:
    moved = jnp.moveaxis(x, axis, -1)
    taps = moved[..., idx]  # (..., size_out, T)
    if idx.shape[1] == 1:
        out = taps[..., 0]
    else:
        out = jnp.einsum("...ot,ot->...o", taps, jnp.asarray(weights, taps.dtype))
    return jnp.moveaxis(out, -1, axis)


def _output_size(name, input, size, scale_factor, recompute_scale_factor):
    nd = input.ndim - 2
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{name}: exactly one of size and scale_factor must be given, got "
                         f"{size=} and {scale_factor=}")
    if size is not None:
        sizes = (size,) * nd if isinstance(size, int) else tuple(size)
        if len(sizes) != nd:
            raise ValueError(f"{name}: size must be an int or {nd} ints for input of shape "
                             f"{input.shape}, got {size!r}")
        return sizes, (None,) * nd
    scales = (scale_factor,) * nd if isinstance(scale_factor, int | float) else \
        tuple(scale_factor)
    if len(scales) != nd:
        raise ValueError(f"{name}: scale_factor must be a number or {nd} numbers for input of "
                         f"shape {input.shape}, got {scale_factor!r}")
    sizes = tuple(math.floor(n * float(s)) for n, s in zip(input.shape[2:], scales))
    return sizes, ((None,) * nd if recompute_scale_factor else scales)


def interpolate(input: jax.Array, size: int | Sequence[int] | None = None,
                scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> jax.Array:
    """Resize (N, C, *spatial) to ``size`` or by ``scale_factor``.

    Modes: "nearest", "nearest-exact", "linear" (3-d input), "bilinear", "bicubic" (4-d),
    "trilinear" (5-d), "area" (adaptive average pooling). ``antialias`` (bilinear, bicubic)
    widens the filter when downsampling, as PyTorch (and PIL) do.

    Example:
        >>> interpolate(jnp.array([[[0.0, 1.0]]]), scale_factor=2, mode="linear")
        Array([[[0.  , 0.25, 0.75, 1.  ]]], dtype=float32)
    """
    name = "interpolate"
    if mode not in _INTERP_MODES:
        raise ValueError(f"{name}: mode must be one of {_INTERP_MODES}, got {mode!r}")
    if input.ndim not in (3, 4, 5) or _INTERP_RANK.get(mode, input.ndim) != input.ndim:
        want = _INTERP_RANK.get(mode, "3, 4 or 5")
        raise ValueError(f"{name}: mode={mode!r} expects input of rank {want}, got shape "
                         f"{input.shape}")
    if align_corners is not None and mode not in _INTERP_RANK:
        raise ValueError(f"{name}: align_corners can only be set with the interpolating modes "
                         f"linear, bilinear, bicubic, trilinear; got {mode=}")
    if antialias and mode not in ("bilinear", "bicubic"):
        raise ValueError(f"{name}: antialias=True needs mode 'bilinear' or 'bicubic', got "
                         f"{mode=}")
    sizes, scales = _output_size(name, input, size, scale_factor, recompute_scale_factor)
    if mode == "area":
        pool = (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d)[input.ndim - 3]
        return pool(input, sizes if input.ndim > 3 else sizes[0])
    tap_mode = "linear" if mode in ("bilinear", "trilinear") else mode
    x = input if tap_mode.startswith("nearest") else input.astype(
        jnp.promote_types(input.dtype, jnp.float32))
    for i, (n_out, scale) in enumerate(zip(sizes, scales)):
        taps = _taps_antialias if antialias else _taps
        idx, weights = taps(tap_mode, input.shape[2 + i], n_out, bool(align_corners), scale)
        x = _resample_dim(x, 2 + i, idx, weights)
    return x.astype(input.dtype)


def upsample(input: jax.Array, size=None, scale_factor=None, mode: str = "nearest",
             align_corners: bool | None = None) -> jax.Array:
    """Deprecated alias of ``interpolate``, as in PyTorch."""
    warnings.warn("upsample is deprecated; use interpolate", UserWarning, stacklevel=2)
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: jax.Array, size=None, scale_factor=None) -> jax.Array:
    """Deprecated: ``interpolate(..., mode="nearest")``."""
    warnings.warn("upsample_nearest is deprecated; use interpolate", UserWarning, stacklevel=2)
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: jax.Array, size=None, scale_factor=None) -> jax.Array:
    """Deprecated: ``interpolate(..., mode="bilinear", align_corners=True)``."""
    warnings.warn("upsample_bilinear is deprecated; use interpolate", UserWarning, stacklevel=2)
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# ----------------------------------------------------------------------------- grid sampling

_GRID_MODES = ("bilinear", "nearest", "bicubic")
_GRID_PADDING = ("zeros", "border", "reflection")


def _unnormalize(coord: jax.Array, size: int, align_corners: bool) -> jax.Array:
    if align_corners:
        return (coord + 1) / 2 * (size - 1)
    return ((coord + 1) * size - 1) / 2


def _reflect(coord: jax.Array, twice_low: int, twice_high: int) -> jax.Array:
    if twice_low == twice_high:
        return jnp.zeros_like(coord)
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    coord = jnp.abs(coord - low)
    extra = jnp.fmod(coord, span)
    flips = jnp.floor(coord / span)
    return jnp.where(flips % 2 == 0, extra + low, span - extra + low)


def _pad_coord(coord: jax.Array, size: int, padding_mode: str, align_corners: bool) -> jax.Array:
    """Apply the padding mode to pixel coordinates (zeros: as they are)."""
    if padding_mode == "reflection":
        coord = (_reflect(coord, 0, 2 * (size - 1)) if align_corners
                 else _reflect(coord, -1, 2 * size - 1))
    if padding_mode in ("border", "reflection"):
        coord = jnp.clip(coord, 0, size - 1)
    return coord


def _gather(img: jax.Array, index: Sequence[jax.Array]) -> jax.Array:
    """img (C, *spatial) at integer positions (one array per dim, (*out)), zero outside."""
    inside = True
    clipped = []
    for i, size in zip(index, img.shape[1:]):
        inside = inside & (i >= 0) & (i < size)
        clipped.append(jnp.clip(i, 0, size - 1))
    return jnp.where(inside, img[(slice(None), *clipped)], jnp.zeros((), img.dtype))


def _linear_corners(img, coords):
    """(Bi/tri)linear: the 2**nd corners around each point, weighted by the opposite volume."""
    lows = [jnp.floor(c) for c in coords]
    out = 0
    for corner in range(2 ** len(coords)):
        bits = [(corner >> d) & 1 for d in range(len(coords))]
        weight = 1
        for c, lo, bit in zip(coords, lows, bits):
            weight = weight * ((c - lo) if bit else (lo + 1 - c))
        tap = _gather(img, [(lo + bit).astype(jnp.int32) for lo, bit in zip(lows, bits)])
        out = out + tap * weight[None]
    return out


def _bicubic(img, coords, padding_mode, align_corners):
    """4 x 4 taps with PyTorch's cubic weights (A = -0.75); padding applies to each tap."""
    (ix, iy), (_, h, w) = coords, img.shape
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    wx = [_cubic_weight(ix - x0, k) for k in range(4)]
    wy = [_cubic_weight(iy - y0, k) for k in range(4)]
    out = 0
    for j in range(4):
        ty = _pad_coord(y0 - 1 + j, h, padding_mode, align_corners).astype(jnp.int32)
        for i in range(4):
            tx = _pad_coord(x0 - 1 + i, w, padding_mode, align_corners).astype(jnp.int32)
            out = out + _gather(img, [ty, tx]) * (wx[i] * wy[j])[None]
    return out


def _cubic_weight(t: jax.Array, k: int) -> jax.Array:
    a = _CUBIC_A
    x = (t + 1, t, 1 - t, 2 - t)[k]
    if k in (1, 2):
        return ((a + 2) * x - (a + 3)) * x * x + 1
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def grid_sample(input: jax.Array, grid: jax.Array, mode: str = "bilinear",
                padding_mode: str = "zeros", align_corners: bool | None = None) -> jax.Array:
    """Sample (N, C, H, W) at the normalised (x, y) of ``grid`` (N, Ho, Wo, 2), or
    (N, C, D, H, W) at the (x, y, z) of ``grid`` (N, Do, Ho, Wo, 3).

    ``grid`` values in [-1, 1] span the input (pixel corners, or centres with
    ``align_corners=True``). Modes "bilinear" (trilinear for 5-d), "nearest" (ties round to
    even), "bicubic" (4-d only); padding modes "zeros", "border", "reflection".

    Example:
        >>> grid_sample(jnp.ones((1, 2, 3, 3)), jnp.zeros((1, 4, 5, 2))).shape
        (1, 2, 4, 5)
    """
    name = "grid_sample"
    if mode not in _GRID_MODES:
        raise ValueError(f"{name}: mode must be one of {_GRID_MODES}, got {mode!r}")
    if padding_mode not in _GRID_PADDING:
        raise ValueError(f"{name}: padding_mode must be one of {_GRID_PADDING}, "
                         f"got {padding_mode!r}")
    nd = input.ndim - 2
    if nd not in (2, 3) or grid.shape[:1] + grid.shape[-1:] != (input.shape[0], nd) \
            or grid.ndim != input.ndim:
        raise ValueError(f"{name}: expected input (N, C, H, W) with grid (N, Ho, Wo, 2), or "
                         f"input (N, C, D, H, W) with grid (N, Do, Ho, Wo, 3), got {input.shape} "
                         f"and {grid.shape}")
    if mode == "bicubic" and nd == 3:
        raise ValueError(f"{name}: mode='bicubic' needs 4-d input, got shape {input.shape}")
    ct = jnp.promote_types(input.dtype, jnp.float32)
    g, corners = grid.astype(ct), bool(align_corners)
    sizes = input.shape[:1:-1]  # W, H[, D]: the order of the grid's coordinates
    raw = [_unnormalize(g[..., d], size, corners) for d, size in enumerate(sizes)]

    def sample(img, *coords):
        if mode == "bicubic":
            return _bicubic(img, coords, padding_mode, corners)
        coords = [_pad_coord(c, s, padding_mode, corners) for c, s in zip(coords, sizes)]
        if mode == "nearest":
            return _gather(img, [jnp.round(c).astype(jnp.int32) for c in coords[::-1]])
        return _linear_corners(img, coords[::-1])

    return jax.vmap(sample)(input.astype(ct), *raw).astype(input.dtype)


def _base_coords(steps: int, align_corners: bool) -> jnp.ndarray:
    if steps <= 1:
        return jnp.zeros((steps,), jnp.float32)
    line = jnp.linspace(-1.0, 1.0, steps, dtype=jnp.float32)
    return line if align_corners else line * (steps - 1) / steps


def affine_grid(theta: jax.Array, size: Sequence[int], align_corners: bool | None = None
                ) -> jax.Array:
    """Sampling grid for ``grid_sample`` from affine maps ``theta``.

    ``theta`` (N, 2, 3) with ``size`` (N, C, H, W) gives (N, H, W, 2); ``theta`` (N, 3, 4) with
    ``size`` (N, C, D, H, W) gives (N, D, H, W, 3).

    Example:
        >>> affine_grid(jnp.eye(2, 3)[None], (1, 1, 2, 2), align_corners=True)[0, 0]
        Array([[-1., -1.],
               [ 1., -1.]], dtype=float32)
    """
    size = tuple(size)
    nd = len(size) - 2
    if nd not in (2, 3) or theta.shape != (size[0], nd, nd + 1):
        raise ValueError(f"affine_grid: expected theta (N, 2, 3) with size (N, C, H, W) or theta "
                         f"(N, 3, 4) with size (N, C, D, H, W), got {theta.shape} and {size}")
    # coordinates x (last spatial dim) first, then y (and z), then the constant 1
    axes = [_base_coords(n, bool(align_corners)) for n in reversed(size[2:])]
    mesh = jnp.meshgrid(*axes, indexing="ij")  # each (W, H[, D])
    base = jnp.stack([*mesh, jnp.ones_like(mesh[0])], axis=-1)
    base = jnp.transpose(base, (*tuple(reversed(range(nd))), nd))  # ([D,] H, W, nd + 1)
    grid = jnp.einsum("...k,njk->n...j", base.astype(theta.dtype), theta,
                      precision=jax.lax.Precision.HIGHEST)
    return grid


# ----------------------------------------------------------------------------- shuffles


def pixel_shuffle(input: jax.Array, upscale_factor: int) -> jax.Array:
    """(*, C * r**2, H, W) -> (*, C, H * r, W * r).

    Example:
        >>> pixel_shuffle(jnp.ones((1, 8, 2, 3)), 2).shape
        (1, 2, 4, 6)
    """
    r = upscale_factor
    if input.ndim < 3 or input.shape[-3] % (r * r):
        raise ValueError(f"pixel_shuffle: expected input (*, C * {r}**2, H, W), got shape "
                         f"{input.shape}")
    *lead, c, h, w = input.shape
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    n = len(lead)
    x = jnp.transpose(x, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: jax.Array, downscale_factor: int) -> jax.Array:
    """(*, C, H * r, W * r) -> (*, C * r**2, H, W); the inverse of ``pixel_shuffle``."""
    r = downscale_factor
    if input.ndim < 3 or input.shape[-2] % r or input.shape[-1] % r:
        raise ValueError(f"pixel_unshuffle: expected input (*, C, H * {r}, W * {r}), got shape "
                         f"{input.shape}")
    *lead, c, h, w = input.shape
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    n = len(lead)
    x = jnp.transpose(x, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    return x.reshape(*lead, c * r * r, h // r, w // r)


def channel_shuffle(input: jax.Array, groups: int) -> jax.Array:
    """Interleave the channels of (N, C, *) from ``groups`` groups: (N, g, C/g, *) -> transpose."""
    if input.ndim < 3 or input.shape[1] % groups:
        raise ValueError(f"channel_shuffle: groups={groups} must divide the channels of an input "
                         f"of rank >= 3, got shape {input.shape}")
    n, c, *rest = input.shape
    x = input.reshape(n, groups, c // groups, *rest)
    return jnp.swapaxes(x, 1, 2).reshape(input.shape)
