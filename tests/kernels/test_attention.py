"""kernels.attention: the reference against torch, what the Pallas kernel refuses, heads that
broadcast or group as in PyTorch, and what "auto" runs (for inference and training apart)."""

import importlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from tests.kernels.test__float32_sums import dot_operand_dtypes
from tests.kernels.test__pallas_attention import check_batch_sharded_training
from tests.oracle import check_vs_torch
from torsh_fn.kernels import _dispatch, _pallas_attention
from torsh_fn.kernels._pallas_attention import AttentionConfig
from torsh_fn.kernels.attention import (
    _auto_choice,
    _pallas_entry,
    attention,
    attention_reference,
    inference_or_training,
)

attention_module = importlib.import_module("torsh_fn.kernels.attention")  # the package
# re-exports attention()


def test_attention_reference_matches_torch(rng):
    q, k, v = (rng.standard_normal((2, 5, 4)).astype(np.float32) for _ in range(3))
    check_vs_torch(lambda q, k, v: attention_reference(q, k, v, is_causal=True),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True),
                   q, k, v, rng=rng, variant=jax.jit, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
@pytest.mark.parametrize("float_mask", [False, True])
def test_hidden_rows_give_zeros_and_zero_gradients_as_torch(rng, impl, float_mask):
    """Query rows that the mask hides from every key: zeros and zero gradients, as torch's SDPA
    (the reference's softmax once divided 0 by 0 there, and its gradients were NaN)."""
    q = rng.standard_normal((2, 3, 6, 8)).astype(np.float32)
    k, v = (rng.standard_normal((2, 3, 7, 8)).astype(np.float32) for _ in range(2))
    mask = rng.random((2, 1, 6, 7)) < 0.7
    mask[0, 0, [1, 4]] = mask[1, 0, 5] = False
    if float_mask:  # -inf where hidden, and a bias (differentiated) where not
        mask = np.where(mask, rng.standard_normal(mask.shape), -np.inf).astype(np.float32)
    check_vs_torch(lambda *a: attention(*a, impl=impl),
                   lambda *a: TF.scaled_dot_product_attention(*a),
                   q, k, v, mask, rng=rng, rtol=1e-5, atol=1e-5, grad=(0, 1, 2))


def test_16_bit_reference_runs_16_bit_products_as_torch(rng):
    """bf16 with a padding mask (what always takes the reference): values and gradients as
    torch's SDPA in bf16 and near the float32 computation, and every product, forward and
    backward, on bf16 operands (float32 products of the upcast inputs ran at a fraction of the
    tensor cores' bf16 speed)."""
    q, k, v = (rng.standard_normal((2, 3, 37, 16)).astype(np.float32) for _ in range(3))
    mask = np.arange(37)[None, None, None, :] < np.array([37, 20])[:, None, None, None]
    cot = rng.standard_normal((2, 3, 37, 16)).astype(np.float32)
    jq, jk, jv = (jnp.asarray(x, jnp.bfloat16) for x in (q, k, v))

    def loss(q, k, v):
        out = attention(q, k, v, jnp.asarray(mask), impl="xla")
        return jnp.sum(out.astype(jnp.float32) * cot)

    dtypes = dot_operand_dtypes(jax.make_jaxpr(jax.value_and_grad(loss, (0, 1, 2)))(
        jq, jk, jv).jaxpr)
    assert len(dtypes) == 6 and all(d == jnp.bfloat16 for pair in dtypes for d in pair), dtypes
    tq, tk, tv = (torch.tensor(x, dtype=torch.bfloat16, requires_grad=True) for x in (q, k, v))
    t_out = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask))
    (t_out.float() * torch.tensor(cot)).sum().backward()
    out = attention(jq, jk, jv, jnp.asarray(mask), impl="xla")
    exact = attention_reference(*(jnp.asarray(x) for x in (q, k, v)), jnp.asarray(mask))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), t_out.detach().float().numpy(),
                               rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(np.asarray(out, np.float32), exact, rtol=2e-2, atol=2e-2)
    for got, want in zip(jax.grad(loss, (0, 1, 2))(jq, jk, jv), (tq.grad, tk.grad, tv.grad),
                         strict=True):
        want = want.float().numpy()
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=5e-2,
                                   atol=2e-2 * np.abs(want).max())


def test_pallas_refuses_what_the_kernel_does_not_cover():
    x = jnp.ones((1, 5, 4))
    with pytest.raises(ValueError, match="attention: the Pallas kernel does not take a mask of "
                       "dtype int8"):
        attention(x, x, x, jnp.ones((5, 5), jnp.int8), impl="pallas")
    with pytest.raises(ValueError, match="does not take dropout_p = 1"):
        attention(x, x, x, dropout_p=1.0, key=jax.random.key(0), impl="pallas")


@pytest.mark.parametrize("q_heads, kv_heads", [(1, 3), (3, 1), (6, 2)])
def test_auto_broadcasts_or_groups_heads_as_torch(rng, q_heads, kv_heads):
    q = rng.standard_normal((2, q_heads, 5, 4)).astype(np.float32)
    k, v = (rng.standard_normal((2, kv_heads, 7, 4)).astype(np.float32) for _ in range(2))
    gqa = q_heads > kv_heads > 1
    check_vs_torch(lambda q, k, v: attention(q, k, v),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, enable_gqa=gqa),
                   q, k, v, rng=rng, rtol=1e-4, atol=1e-5)


def test_inference_or_training_runs_each_where_it_was_chosen(rng):
    """Undifferentiated calls (jit, vmap) run ``infer``; ``grad`` runs ``train``'s forward and
    its backward; values and gradients are the reference's."""
    calls = []

    def spy(name):
        def run(q, k, v):
            calls.append(name)
            return attention_reference(q, k, v, is_causal=True)
        return run

    both = inference_or_training(spy("infer"), spy("train"))
    q, k, v = (jnp.asarray(rng.standard_normal((2, 3, 7, 5)), jnp.float32) for _ in range(3))
    expected = attention_reference(q, k, v, is_causal=True)
    np.testing.assert_allclose(jax.jit(both)(q, k, v), expected, rtol=1e-5, atol=1e-6)
    assert jax.vmap(both)(q, k, v).shape == expected.shape and calls == ["infer", "infer"]
    calls.clear()
    loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v) * v)
    value, grads = jax.jit(jax.value_and_grad(loss(both), argnums=(0, 1, 2)))(q, k, v)
    want_value, want_grads = jax.value_and_grad(
        loss(lambda q, k, v: attention_reference(q, k, v, is_causal=True)),
        argnums=(0, 1, 2))(q, k, v)
    assert calls == ["train"]
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _on_the_h200(monkeypatch):
    """This machine as a Hopper GPU that reads the shipped H200 entries."""
    h200 = _dispatch._tables()["devices"]["NVIDIA H200"]
    monkeypatch.setattr(_dispatch, "_table", lambda: h200)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)


@pytest.mark.parametrize("q_shape, kv_shape, causal, dtype, training, picks", [
    ((4, 16, 4096, 128), (4, 16, 4096, 128), True, jnp.bfloat16, True, "pallas"),
    ((4, 16, 4096, 128), (4, 16, 4096, 128), True, jnp.bfloat16, False, "pallas"),
    ((4, 16, 4096, 128), (4, 16, 4096, 128), False, jnp.bfloat16, True, "pallas"),
    ((4, 16, 4096, 128), (4, 16, 4096, 128), False, jnp.bfloat16, False, "pallas"),
    ((4, 16, 1024, 128), (4, 16, 1024, 128), True, jnp.bfloat16, True, "pallas"),
    ((4, 16, 4096, 256), (4, 16, 4096, 256), True, jnp.bfloat16, True, "pallas"),  # cuDNN: D
    ((4, 16, 3000, 64), (4, 16, 5000, 64), True, jnp.bfloat16, True, "pallas"),  # L == S only
    ((4, 16, 4095, 128), (4, 16, 4095, 128), True, jnp.bfloat16, True, "pallas"),  # even only
    ((4, 16, 4094, 128), (4, 16, 4094, 128), True, jnp.bfloat16, True, "cudnn"),  # Mosaic: 128s
    ((4, 16, 1000, 128), (4, 16, 1000, 128), True, jnp.bfloat16, True, "cudnn"),  # Triton's
    ((4, 16, 1000, 128), (4, 16, 1000, 128), True, jnp.bfloat16, False, "pallas"),  # entries
    ((4, 16, 4096, 96), (4, 16, 4096, 96), True, jnp.bfloat16, True, "cudnn"),  # Mosaic: D
    ((4, 16, 4096, 100), (4, 16, 4096, 100), True, jnp.bfloat16, True, "pallas"),  # cuDNN: 8s
    ((4, 16, 64, 128), (4, 16, 64, 128), True, jnp.bfloat16, False, "xla"),  # none measured near
    ((1, 8, 32768, 128), (1, 8, 32768, 128), True, jnp.bfloat16, False, "pallas"),  # longest's
    ((4, 16, 1, 128), (4, 16, 4096, 128), False, jnp.bfloat16, False, "xla"),  # one query
    ((4, 16, 512, 128), (4, 16, 4096, 128), False, jnp.bfloat16, False, "pallas"),  # 1024's
    ((4, 16, 256, 128), (4, 16, 256, 128), False, jnp.bfloat16, False, "xla"),  # 1.08x: XLA
    ((4, 16, 4096, 128), (4, 16, 4096, 128), True, jnp.float32, False, "xla"),
])
def test_auto_follows_the_h200_table(monkeypatch, q_shape, kv_shape, causal, dtype, training,
                                     picks):
    """The shipped H200 entries (B4 H16 D128 bf16 at 256, 1024 and 4096 keys): the Pallas
    forward alone is the fastest there (but at 256 keys without the mask, within the margin of
    XLA's), and in training the Mosaic kernels, with the mask and without. Where the Mosaic
    kernels do not take a call: in training cuDNN's own step from 1024 keys up where cuDNN
    takes it (its entries are faster than the Triton kernels'), else the Triton kernels; a
    length halfway between two measured ones takes the longer's entry."""
    _on_the_h200(monkeypatch)
    q, kv = jax.ShapeDtypeStruct(q_shape, dtype), jax.ShapeDtypeStruct(kv_shape, dtype)
    assert _auto_choice(q, kv, kv, causal, training) == picks


@pytest.mark.parametrize("length, causal, training, picks", [
    (4096, True, True, "pallas"), (4096, False, False, "pallas"), (1024, True, False, "pallas"),
    (256, False, True, "pallas"),  # 1.73x
    (256, False, False, "xla"),  # 1.07x: within the margin (the Triton kernels' 1.12x too)
    (256, True, True, "triton"),  # 0.86x; the Triton kernels 1.44x, 1.54x faster
    (256, True, False, "triton"),  # 0.96x; the Triton kernels 1.25x, 1.19x faster
])
def test_auto_follows_the_h200_table_with_a_key_padding_mask(monkeypatch, length, causal,
                                                             training, picks):
    """The shipped H200 ``_masked`` entries (a key padding mask, B4 H16 D128 bf16; the Mosaic
    forward and backward): the kernels from 1024 keys up, and at 256 keys the training step
    without the causal mask; at 256 keys causal the Triton kernels' ``triton_`` entries, more
    than the margin faster than the Mosaic kernels and XLA; XLA at 256 keys for the forward
    without it."""
    _on_the_h200(monkeypatch)
    q = jax.ShapeDtypeStruct((4, 16, length, 128), jnp.bfloat16)
    mask = jax.ShapeDtypeStruct((4, 1, 1, length), jnp.bool_)
    assert _pallas_entry(q, q, q, causal, training, None, "op", 0.1, mask) == "op"
    assert _auto_choice(q, q, q, causal, training, mask=mask) == picks


@pytest.mark.parametrize("length, causal, training, picks", [
    (4096, True, True, "pallas"), (4096, False, False, "pallas"), (1024, False, True, "pallas"),
    (1000, True, False, "pallas"),  # the Triton kernels take any length
    (256, False, True, "xla"),  # 0.91x
    (256, False, False, "xla"),  # 1.12x: within the margin
    (256, True, True, "pallas"),  # 1.44x
])
def test_auto_follows_the_h200_table_with_a_mask_of_the_triton_kernels(
        monkeypatch, length, causal, training, picks):
    """The shipped H200 ``triton_..._masked`` entries, for a mask of a row per query (and any
    mask at lengths the Mosaic forward refuses): the Triton kernels from 1024 keys up, and at
    256 causal; XLA at 256 keys without the causal mask."""
    _on_the_h200(monkeypatch)
    q = jax.ShapeDtypeStruct((4, 16, length, 128), jnp.bfloat16)
    mask = jax.ShapeDtypeStruct((4, 1, length, length), jnp.bool_)
    assert _pallas_entry(q, q, q, causal, training, None, "op", 0.1, mask) == "triton_op"
    assert _auto_choice(q, q, q, causal, training, mask=mask) == picks


@pytest.mark.parametrize("length, causal, training, picks", [
    (4096, True, True, "pallas"), (4096, False, False, "pallas"), (1024, False, True, "pallas"),
    (256, True, True, "pallas"),  # 1.67x
    (256, False, True, "pallas"),  # 1.61x
    (256, True, False, "triton"),  # 0.99x; the Triton kernels 1.34x, 1.43x faster
    (256, False, False, "triton"),  # 0.86x; the Triton kernels 1.26x, 1.41x faster
])
def test_auto_follows_the_h200_table_with_a_mask_and_dropout(monkeypatch, length, causal,
                                                             training, picks):
    """The shipped H200 ``_masked_dropout`` entries (a key padding mask and dropout 0.1, B4 H16
    D128 bf16; the Mosaic kernels): the kernels from 1024 keys up and for the training step at
    256 (the Triton kernels' causal entry, 1.08x faster, is within the margin); the Triton
    kernels for the forward at 256 keys."""
    _on_the_h200(monkeypatch)
    q = jax.ShapeDtypeStruct((4, 16, length, 128), jnp.bfloat16)
    mask = jax.ShapeDtypeStruct((4, 1, 1, length), jnp.bool_)
    op = "attention_masked_dropout"
    assert _pallas_entry(q, q, q, causal, training, None, op, 0.1, mask) == op
    assert _auto_choice(q, q, q, causal, training, mask=mask, dropout=True) == picks


@pytest.mark.parametrize("length, causal, training", [
    (1000, True, True), (1000, False, False), (250, False, False),  # 1.26x: past the margin
])
def test_auto_follows_the_h200_table_of_the_triton_kernels_with_a_mask_and_dropout(
        monkeypatch, length, causal, training):
    """Where the Mosaic kernels refuse the length, the shipped H200
    ``triton_..._masked_dropout`` entries: the Triton kernels at every length (1.26-7.66x)."""
    _on_the_h200(monkeypatch)
    q = jax.ShapeDtypeStruct((4, 16, length, 128), jnp.bfloat16)
    mask = jax.ShapeDtypeStruct((4, 1, 1, length), jnp.bool_)
    op = "attention_masked_dropout"
    assert _pallas_entry(q, q, q, causal, training, None, op, 0.1, mask) == "triton_" + op
    assert _auto_choice(q, q, q, causal, training, mask=mask, dropout=True) == "pallas"


@pytest.mark.parametrize("length, causal, training, picks", [
    (4096, True, True, "pallas"), (1024, False, False, "pallas"),
    (256, True, True, "triton"),  # the Triton kernels 1.96x XLA, 1.30x faster than Mosaic's
    (256, True, False, "pallas"),  # 1.32x: past the 15% margin
    (256, False, False, "pallas"),  # 1.26x
    (250, False, False, "xla"),  # the Triton kernels' entry: 1.13x, within the margin
])
def test_auto_follows_the_h200_table_with_dropout(monkeypatch, length, causal, training, picks):
    """The shipped H200 ``_dropout`` entries (dropout 0.1, B4 H16 D128 bf16; the Mosaic
    kernels) at every length measured but for causal training at 256 keys, where the Triton
    kernels' entry is the faster by more than the margin; the Triton kernels' ``triton_`` ones
    at lengths the Mosaic kernels refuse (XLA for the forward at 256 keys without the causal
    mask)."""
    _on_the_h200(monkeypatch)
    q = jax.ShapeDtypeStruct((4, 16, length, 128), jnp.bfloat16)
    op = "attention_dropout"
    assert _pallas_entry(q, q, q, causal, training, None, op, 0.1) == (
        op if length % 128 == 0 else "triton_" + op)
    assert _auto_choice(q, q, q, causal, training, dropout=True) == picks


@pytest.mark.parametrize("scale", [-0.1, 0.0])
def test_auto_takes_a_scale_that_is_not_positive_to_the_triton_kernels(monkeypatch, scale):
    """On the H200's table, where the Mosaic kernels, cuDNN and the pair would run a positive
    scale (B4 H16 S4096 D128 bf16), a scale that is not positive runs the Triton kernels, looked
    up by their own entries (they beat XLA)."""
    _on_the_h200(monkeypatch)
    q = jax.ShapeDtypeStruct((4, 16, 4096, 128), jnp.bfloat16)
    for causal, training in itertools.product((True, False), (True, False)):
        assert _auto_choice(q, q, q, causal, training, scale=scale) == "pallas"
        op = ("attention_causal" if causal else "attention") + ("" if training else "_fwd")
        assert _pallas_entry(q, q, q, causal, training, None, op, scale) == "triton_" + op
        assert _pallas_entry(q, q, q, causal, training, None, op, 0.1) == op


def _fake_gpu(monkeypatch, ops):
    """This machine as a GPU (not a Hopper one: the Pallas kernels are Triton's, looked up as
    ``triton_`` entries) whose dispatch table holds ``ops``; returns the list of kernels that
    ``attention`` then runs (each computed by the reference)."""
    monkeypatch.setattr(_dispatch, "_tables", lambda: {"margin": 0.15, "devices": {
        jax.devices()[0].device_kind: {"ops": ops}}})
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    flashes = []

    def flash(q, k, v, is_causal, scale, config, kernels, mask=None, dropout_p=0.0, key=None):
        flashes.append(kernels)
        return attention_reference(q, k, v, mask, is_causal=is_causal, scale=scale,
                                   dropout_p=dropout_p, key=key)

    monkeypatch.setattr(attention_module, "_flash", flash)
    return flashes


@pytest.fixture
def split_table(monkeypatch):
    """A GPU whose table has the Pallas forward fastest alone and cuDNN fastest in training,
    for causal attention, and nothing for attention without the mask."""
    return _fake_gpu(monkeypatch, {
        "triton_attention_causal_fwd": {"bfloat16": [[4096, 1.0, 20.0]]},
        "cudnn_attention_causal_fwd": {"bfloat16": [[4096, 1.2, 20.0]]},
        "triton_attention_causal": {"bfloat16": [[4096, 4.0, 40.0]]},
        "cudnn_attention_causal": {"bfloat16": [[4096, 3.0, 40.0]]}})


def test_auto_takes_a_mask_to_the_pallas_kernels_where_measured_faster(rng, monkeypatch):
    """With a mask only the Pallas kernels are candidates, not cuDNN however fast its entries:
    on Hopper a key padding mask by the Mosaic forward's ``_masked`` entries (in training a
    bool one), any other by the Triton kernels' ``triton_`` ones; without its entry XLA
    runs."""
    flashes = _fake_gpu(monkeypatch, {
        "attention_masked": {"bfloat16": [[1024, 2.0, 6.0]]},
        "attention_masked_fwd": {"bfloat16": [[1024, 1.0, 1.1]]},
        "triton_attention_masked": {"bfloat16": [[1024, 3.0, 6.0]]},
        "cudnn_attention": {"bfloat16": [[1024, 0.1, 6.0]]},
        "cudnn_attention_fwd": {"bfloat16": [[1024, 0.1, 6.0]]}})
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    q = jnp.asarray(rng.standard_normal((2, 2, 1024, 64)), jnp.bfloat16)
    keys = jax.ShapeDtypeStruct((2, 1, 1, 1024), jnp.bool_)
    assert _auto_choice(q, q, q, False, training=True, mask=keys) == "pallas"
    assert _auto_choice(q, q, q, False, training=False, mask=keys) == "xla"  # within margin
    assert _auto_choice(q, q, q, True, training=True, mask=keys) == "xla"  # not measured
    for mask in (jax.ShapeDtypeStruct((1024, 1024), jnp.bool_),  # a row per query
                 jax.ShapeDtypeStruct((2, 1, 1, 1024), jnp.float32),  # float, in training
                 jax.ShapeDtypeStruct((2, 1, 1024), jnp.bool_)):  # one per head, in training
        assert _pallas_entry(q, q, q, False, True, None, "attention_masked", 0.125,
                             mask) == "triton_attention_masked"
        assert _auto_choice(q, q, q, False, training=True, mask=mask) == "pallas"
        inference = _pallas_entry(q, q, q, False, False, None, "op", 0.125, mask)
        assert inference == ("triton_op" if mask.shape[-2] > 1 else "op")
        # the Triton forward's entry is not measured, the Mosaic one's within the margin
        assert _auto_choice(q, q, q, False, training=False, mask=mask) == "xla"
    assert _auto_choice(q, q, q, False, training=True) == "cudnn"
    assert _auto_choice(q, q, q, False, training=True, dropout=True) == "xla"  # not measured
    mask = jnp.arange(1024) < jnp.array([1024, 700])[:, None, None, None]
    jax.grad(lambda q: jnp.sum(attention(q, q, q, mask).astype(jnp.float32)))(q)
    assert flashes == ["pallas"]


def test_auto_takes_the_triton_kernels_only_where_clearly_faster_than_mosaic(rng, monkeypatch):
    """Where the Mosaic kernels would run ``"pallas"``, ``auto`` runs the Triton kernels (their
    default tiles) only where their ``triton_`` entry is faster than the Mosaic one by more than
    the margin (the two are swept apart), and through ``_flash`` with that tile config."""
    flashes = _fake_gpu(monkeypatch, {
        "attention_dropout": {"bfloat16": [[256, 1.0, 3.0]]},
        "triton_attention_dropout": {"bfloat16": [[256, 0.9, 3.0]]},  # 1.11x: within it
        "attention_dropout_fwd": {"bfloat16": [[256, 1.0, 3.0]]},
        "triton_attention_dropout_fwd": {"bfloat16": [[256, 0.5, 3.0]]}})
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    configs = []
    real_flash = attention_module._flash
    monkeypatch.setattr(attention_module, "_flash", lambda *a, **kw: configs.append(a[5]) or (
        real_flash(*a, **kw)))
    q = jnp.asarray(rng.standard_normal((2, 2, 256, 64)), jnp.bfloat16)
    assert _auto_choice(q, q, q, False, training=True, dropout=True) == "pallas"
    assert _auto_choice(q, q, q, False, training=False, dropout=True) == "triton"
    attention(q, q, q, dropout_p=0.1, key=jax.random.key(0))
    assert flashes == ["pallas"] and configs == [_pallas_attention.default_config(64)]
    flashes.clear()
    configs.clear()
    given = _pallas_attention.default_config(64, masked=True)
    attention(q, q, q, dropout_p=0.1, key=jax.random.key(0), config=given)  # Triton's entries
    assert flashes == ["pallas"] and configs == [given]


def test_auto_chooses_the_forward_and_the_training_step_apart(rng, split_table):
    q = jnp.asarray(rng.standard_normal((1, 2, 4096, 8)), jnp.bfloat16)
    assert _auto_choice(q, q, q, True, training=False) == "pallas"
    assert _auto_choice(q, q, q, True, training=True) == "cudnn"
    assert _auto_choice(q, q, q, False, training=False) == "xla"  # not measured
    out = jax.jit(lambda q: attention(q, q, q, is_causal=True))(q)
    assert split_table == ["pallas"]

    def loss(f):
        return lambda q: jnp.sum(f(q, q, q, is_causal=True).astype(jnp.float32) * q)

    grad = jax.jit(jax.grad(loss(attention)))(q)
    assert split_table == ["pallas", "cudnn"]
    expected, expected_grad = (jax.jit(f)(q) for f in (
        lambda q: attention_reference(q, q, q, is_causal=True),
        jax.grad(loss(attention_reference))))
    for got, want in ((out, expected), (grad, expected_grad)):  # bf16: fusions may round apart
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-2,
                                   atol=2e-2)
    split_table.clear()
    attention(q, q, q, is_causal=True, impl="pallas")  # an explicit impl is taken as it is
    assert split_table == ["pallas"]


@pytest.mark.parametrize("backward_callable, hopper, trains_with", [
    (True, True, "pallas_cudnn"),
    (False, True, "cudnn"),  # this JAX's cuDNN backward cannot be called alone
    (True, False, "cudnn"),  # no Mosaic forward (the pair was measured with it)
])
def test_auto_trains_with_the_pallas_forward_and_cudnn_backward_where_measured_fastest(
        rng, monkeypatch, backward_callable, hopper, trains_with):
    """The pair is a training choice only, where cuDNN's backward can be called alone and the
    forward is the Mosaic kernel; elsewhere cuDNN's own step, the next fastest here."""
    flashes = _fake_gpu(monkeypatch, {
        "attention_causal_fwd": {"bfloat16": [[4096, 1.0, 20.0]]},
        "triton_attention_causal_fwd": {"bfloat16": [[4096, 1.1, 20.0]]},
        "cudnn_attention_causal": {"bfloat16": [[4096, 3.0, 40.0]]},
        "pallas_cudnn_attention_causal": {"bfloat16": [[4096, 2.9, 40.0]]}})
    monkeypatch.setattr(attention_module, "has_backward", lambda: backward_callable)
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: hopper)
    q = jnp.asarray(rng.standard_normal((1, 2, 4096, 64)), jnp.bfloat16)
    assert _auto_choice(q, q, q, True, training=True) == trains_with
    assert _auto_choice(q, q, q, True, training=False) == "pallas"
    tiles = AttentionConfig(block_q=64, block_k=64)  # a tile config: the Triton forward
    assert _auto_choice(q, q, q, True, training=True, config=tiles) == "cudnn"
    odd = q[:, :, :4095]  # cuDNN takes even lengths only: neither cuDNN choice
    assert _auto_choice(odd, odd, odd, True, training=True) == "xla"
    jax.grad(lambda q: jnp.sum(attention(q, q, q, is_causal=True).astype(jnp.float32)))(q)
    assert flashes == [trains_with]


@pytest.mark.parametrize("q_shape, config, picks", [
    ((4, 2, 4096, 64), None, "pallas"),  # the Mosaic kernels: the "pallas" entry
    ((4, 2, 4094, 64), None, "cudnn"),  # lengths not multiples of 128: the Triton kernels
    ((4, 2, 4096, 96), None, "cudnn"),  # head dim 96: the Triton kernels
    ((4, 2, 4096, 64), AttentionConfig(), "cudnn"),  # a tile config: the Triton kernels
    ((4, 2, 4096, 256), None, "pallas"),  # cuDNN: head dim; Triton still beats XLA
])
def test_auto_looks_the_pallas_kernels_up_by_the_ones_that_run(monkeypatch, q_shape, config,
                                                                picks):
    """On Hopper the "pallas" entries measured the Mosaic GPU kernels; a call they do not take
    runs the Triton kernels, looked up as the ``triton_`` entries (here slower than cuDNN's)."""
    _fake_gpu(monkeypatch, {"attention_causal": {"bfloat16": [[4096, 1.0, 40.0]]},
                            "triton_attention_causal": {"bfloat16": [[4096, 3.5, 40.0]]},
                            "cudnn_attention_causal": {"bfloat16": [[4096, 3.0, 40.0]]}})
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    q = jax.ShapeDtypeStruct(q_shape, jnp.bfloat16)
    assert _auto_choice(q, q, q, True, training=True, config=config) == picks


@pytest.mark.parametrize("length, entry", [(4096, "attention_causal"),
                                           (4094, "triton_attention_causal")])
def test_the_pallas_entry_is_found_on_the_shapes_the_kernels_see(monkeypatch, length, entry):
    """Leading dims flatten into the batch and 3-D inputs gain one, as ``_flash`` passes them
    to the kernels: the Mosaic kernels take (2, 2, 2, 4096, 64) as (4, 2, 4096, 64)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(_pallas_attention, "on_hopper", lambda: True)
    for shape in ((2, 2, 2, length, 64), (2, length, 64)):
        q = jax.ShapeDtypeStruct(shape, jnp.bfloat16)
        assert _pallas_entry(q, q, q, True, True, None, "attention_causal") == entry


@pytest.mark.gpu
@pytest.mark.skipif(jax.device_count() < 2, reason="needs two or more GPUs")
@pytest.mark.parametrize("axis_type", [jax.sharding.AxisType.Auto, jax.sharding.AxisType.Explicit])
def test_auto_trains_with_cudnn_backward_on_every_device_with_the_batch_sharded(
        rng, monkeypatch, axis_type):
    """Under ``jit`` with the batch sharded over the GPUs, "auto"'s Pallas forward with cuDNN's
    backward runs on each device's own rows (no all-gather), and the gradients stay sharded and
    match the reference."""
    monkeypatch.setattr(_dispatch, "_tables", lambda: {"margin": 0.15, "devices": {
        jax.devices()[0].device_kind: {"ops": {
            "pallas_cudnn_attention_causal": {"bfloat16": [[256, 1.0, 40.0]]}}}}})
    check_batch_sharded_training(rng, monkeypatch, axis_type, "cudnn_attention_bwd", "auto")
