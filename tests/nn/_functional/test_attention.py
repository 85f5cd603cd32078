"""nn.functional attention against torch: scaled_dot_product_attention, MHA forward."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


SDPA_CASES = [  # q shape, kv length, kwargs
    ((2, 3, 5, 4), 7, {}),
    ((2, 3, 5, 4), 5, {"is_causal": True}),
    ((3, 6, 4), 7, {"is_causal": True, "scale": 0.3}),
    ((2, 3, 5, 4), 7, {"mask": "bool"}),
    ((2, 3, 5, 4), 7, {"mask": "float"}),
]


@pytest.mark.parametrize("q_shape, s, kwargs", SDPA_CASES)
def test_sdpa(q_shape, s, kwargs, rng):
    q = _normal(rng, *q_shape)
    k, v = _normal(rng, *q_shape[:-2], s, 4), _normal(rng, *q_shape[:-2], s, 3)
    kwargs = dict(kwargs)
    mask = kwargs.pop("mask", None)
    inputs = [q, k, v]
    if mask == "bool":
        m = rng.random((q_shape[-2], s)) > 0.3
        m[:, 0] = True
        inputs.append(m)
    elif mask == "float":
        inputs.append(_normal(rng, q_shape[1], q_shape[-2], s))
    check_vs_torch(lambda *a: F.scaled_dot_product_attention(*a, **kwargs),
                   lambda *a: TF.scaled_dot_product_attention(*a, **kwargs), *inputs,
                   grad=[0, 1, 2], variant=jax.jit, rng=rng, **TOL)


def test_sdpa_gqa_and_fully_masked_rows(rng):
    q, k, v = _normal(rng, 2, 6, 5, 4), _normal(rng, 2, 2, 7, 4), _normal(rng, 2, 2, 7, 4)
    check_vs_torch(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                   q, k, v, variant=jax.jit, **TOL)
    mask = np.ones((5, 7), bool)
    mask[2] = False
    out = F.scaled_dot_product_attention(jnp.asarray(q), jnp.asarray(q), jnp.asarray(q),
                                         jnp.asarray(mask[:, :5]))
    assert jnp.isfinite(out).all() and jnp.all(out[:, :, 2] == 0)


def test_sdpa_dropout_uses_key(rng):
    q = jnp.asarray(_normal(rng, 2, 5, 4))
    key = jax.random.PRNGKey(1)
    a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5, dropout_key=key)
    assert jnp.array_equal(a, F.scaled_dot_product_attention(q, q, q, dropout_p=0.5,
                                                             dropout_key=key))
    assert not jnp.allclose(a, F.scaled_dot_product_attention(q, q, q))


def test_sdpa_bf16_and_vmap(rng):
    q, k, v = (_normal(rng, 2, 3, 5, 8).astype(ml_dtypes.bfloat16) for _ in range(3))
    out = F.scaled_dot_product_attention(*map(jnp.asarray, (q, k, v)), is_causal=True)
    assert out.dtype == jnp.bfloat16
    assert_close(out, TF.scaled_dot_product_attention(*map(to_torch, (q, k, v)), is_causal=True),
                 rtol=3e-2, atol=3e-2)
    qf = _normal(rng, 4, 3, 5, 8)
    out = jax.vmap(lambda q: F.scaled_dot_product_attention(q, q, q))(jnp.asarray(qf))
    t = to_torch(qf)
    assert_close(out, TF.scaled_dot_product_attention(t, t, t), **TOL)


def test_sdpa_errors():
    q = jnp.zeros((2, 5, 4))
    with pytest.raises(ValueError, match="scaled_dot_product_attention: pass either attn_mask"):
        F.scaled_dot_product_attention(q, q, q, jnp.ones((5, 5), bool), is_causal=True)
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention: expected query "
                                         r"\(\.\.\., L, E\), key \(\.\.\., S, E\)"):
        F.scaled_dot_product_attention(q, jnp.zeros((2, 5, 3)), q)
    with pytest.raises(ValueError, match="with enable_gqa, key's heads"):
        F.scaled_dot_product_attention(jnp.zeros((1, 3, 5, 4)), jnp.zeros((1, 2, 5, 4)),
                                       jnp.zeros((1, 2, 5, 4)), enable_gqa=True)


def _mha_params(rng, e, kdim=None, vdim=None, bias_kv=False):
    p = {"in_proj_bias": _normal(rng, 3 * e), "out_proj_weight": _normal(rng, e, e) / 3,
         "out_proj_bias": _normal(rng, e)}
    if kdim is None:
        p["in_proj_weight"] = _normal(rng, 3 * e, e) / 3
    else:
        p.update(q_proj_weight=_normal(rng, e, e) / 3, k_proj_weight=_normal(rng, e, kdim) / 3,
                 v_proj_weight=_normal(rng, e, vdim) / 3)
    if bias_kv:
        p.update(bias_k=_normal(rng, 1, 1, e), bias_v=_normal(rng, 1, 1, e))
    return p


MHA_CASES = [  # batched, kwargs
    (True, {}),
    (True, {"need_weights": False, "key_padding_mask": "bool"}),
    (True, {"average_attn_weights": False, "attn_mask": "float", "add_zero_attn": True}),
    (False, {"attn_mask": "bool", "bias_kv": True}),
    (True, {"separate": True, "key_padding_mask": "float"}),
    # a bool key padding mask alone: the kernel takes (N, heads) heads and the kept keys
    (True, {"need_weights": False, "key_padding_mask": "bool", "bias_kv": True,
            "add_zero_attn": True}),
    (False, {"need_weights": False, "key_padding_mask": "bool"}),
]


@pytest.mark.parametrize("batched, kwargs", MHA_CASES)
def test_multi_head_attention_forward(batched, kwargs, rng):
    kwargs = dict(kwargs)
    e, heads, L, S, N = 6, 3, 5, 7, 2
    separate = kwargs.pop("separate", False)
    kdim = 4 if separate else None
    params = _mha_params(rng, e, kdim, kdim, kwargs.pop("bias_kv", False))
    lead = (N,) if batched else ()
    q = _normal(rng, L, *lead, e)
    k, v = _normal(rng, S, *lead, kdim or e), _normal(rng, S, *lead, kdim or e)
    kpm = kwargs.pop("key_padding_mask", None)
    mask = kwargs.pop("attn_mask", None)
    extra = {}
    if kpm == "bool":
        extra["key_padding_mask"] = np.zeros((*lead, S), bool)
        extra["key_padding_mask"][..., -2:] = True
    elif kpm == "float":
        extra["key_padding_mask"] = _normal(rng, *lead, S)
    if mask == "bool":
        extra["attn_mask"] = np.triu(np.ones((L, S), bool), 1)
    elif mask == "float":
        extra["attn_mask"] = _normal(rng, N * heads, L, S)
    names = list(params) + list(extra)

    def call(mod, q, k, v, *arrays):
        a = dict(zip(names, arrays))
        return mod.multi_head_attention_forward(
            q, k, v, e, heads, a.get("in_proj_weight"), a["in_proj_bias"], a.get("bias_k"),
            a.get("bias_v"), kwargs.get("add_zero_attn", False), 0.0, a["out_proj_weight"],
            a["out_proj_bias"], training=False, key_padding_mask=a.get("key_padding_mask"),
            need_weights=kwargs.get("need_weights", True), attn_mask=a.get("attn_mask"),
            use_separate_proj_weight=separate, q_proj_weight=a.get("q_proj_weight"),
            k_proj_weight=a.get("k_proj_weight"), v_proj_weight=a.get("v_proj_weight"),
            average_attn_weights=kwargs.get("average_attn_weights", True))

    def torch_call(*args):
        out, w = call(TF, *args)
        return (out,) if w is None else (out, w)

    def jax_call(*args):
        out, w = call(F, *args)
        return (out,) if w is None else (out, w)

    inputs = [q, k, v, *params.values(), *extra.values()]
    float_inputs = [i for i, x in enumerate(inputs) if x.dtype == np.float32]
    check_vs_torch(jax_call, torch_call, *inputs, grad=float_inputs, variant=jax.jit, rng=rng,
                   **TOL)


def test_mha_errors():
    x = jnp.zeros((5, 2, 6))
    w = jnp.zeros((18, 6))
    with pytest.raises(ValueError, match="multi_head_attention_forward: query's embed dim 6 must "
                                         "equal embed_dim_to_check=8"):
        F.multi_head_attention_forward(x, x, x, 8, 2, w, None, None, None, False, 0.0,
                                       jnp.zeros((6, 6)), None)
    with pytest.raises(ValueError, match=r"2-d attn_mask must be \(5, 5\), got \(4, 5\)"):
        F.multi_head_attention_forward(x, x, x, 6, 2, w, None, None, None, False, 0.0,
                                       jnp.zeros((6, 6)), None, attn_mask=jnp.zeros((4, 5)))


@pytest.mark.parametrize("q_heads, kv_heads, gqa", [(1, 4, False), (4, 1, False), (6, 2, True),
                                                    (3, 3, True)])
def test_sdpa_heads_broadcast_or_group_as_torch(rng, q_heads, kv_heads, gqa):
    q = rng.standard_normal((2, q_heads, 5, 8)).astype(np.float32)
    k, v = (rng.standard_normal((2, kv_heads, 7, 8)).astype(np.float32) for _ in range(2))
    check_vs_torch(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, enable_gqa=gqa),
                   q, k, v, rng=rng, rtol=1e-4, atol=1e-5)


def test_sdpa_without_gqa_refuses_grouped_heads_as_torch():
    q, kv = jnp.zeros((1, 8, 5, 4)), jnp.zeros((1, 2, 5, 4))
    with pytest.raises(RuntimeError):
        TF.scaled_dot_product_attention(*(torch.zeros(x.shape) for x in (q, kv, kv)))
    with pytest.raises(ValueError, match=r"key's heads .* must equal query's or be 1"):
        F.scaled_dot_product_attention(q, kv, kv)


@pytest.mark.parametrize("padding, attn_mask, kernel_mask", [
    ("bool", False, ((2, 1, 1, 7), jnp.bool_)),  # the key padding mask alone: kept keys
    ("float", False, ((6, 1, 7), jnp.float32)),  # merged float masks of the folded heads
    ("bool", True, ((6, 5, 7), jnp.float32)),
])
def test_mha_hands_the_kernel_a_key_padding_mask_as_kept_keys(monkeypatch, rng, padding,
                                                              attn_mask, kernel_mask):
    """Without the weights, a bool key padding mask alone reaches the attention kernel as
    (N, 1, 1, S) keys kept, with (N, heads, L, head_dim) queries: the mask the Mosaic GPU
    kernels take forward and backward; any other mask merges into one float mask."""
    from torsh_fn.nn._functional import attention as mha

    seen, kernel = [], mha._attention_kernel

    def spy(q, k, v, mask, **kwargs):
        seen.append((q.shape, mask.shape, mask.dtype))
        return kernel(q, k, v, mask, **kwargs)

    monkeypatch.setattr(mha, "_attention_kernel", spy)
    x = jnp.asarray(_normal(rng, 5, 2, 6))
    kpm = np.arange(7) >= np.array([[5], [7]])  # True: padding
    w, ow = jnp.asarray(_normal(rng, 18, 6)), jnp.asarray(_normal(rng, 6, 6))
    F.multi_head_attention_forward(
        x, jnp.asarray(_normal(rng, 7, 2, 6)), jnp.asarray(_normal(rng, 7, 2, 6)), 6, 3, w,
        None, None, None, False, 0.0, ow, None, key_padding_mask=jnp.asarray(
            kpm if padding == "bool" else np.where(kpm, -1e4, 0.0).astype(np.float32)),
        need_weights=False, attn_mask=jnp.zeros((5, 7)) if attn_mask else None)
    q_shape = (2, 3, 5, 2) if kernel_mask[0][0] == 2 else (6, 5, 2)
    assert seen == [(q_shape, kernel_mask[0], jnp.dtype(kernel_mask[1]))]
