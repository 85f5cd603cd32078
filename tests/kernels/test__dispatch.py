"""``_dispatch``: how ``impl`` resolves (the override, bad values, ops without a kernel), what
"auto" reads from the dispatch table, and only on a GPU."""

import jax
import jax.numpy as jnp
import pytest

from tests.kernels.pallas_helpers import normal
from torsh_fn import kernels
from torsh_fn.kernels import _dispatch, reductions


def test_resolve_impl_follows_the_rule_and_the_override():
    assert _dispatch.resolve_impl("op", "auto", lambda: True) == "pallas"
    assert _dispatch.resolve_impl("op", "auto", lambda: False) == "xla"
    assert _dispatch.resolve_impl("op", "auto", None) == "xla"
    assert _dispatch.resolve_impl("op", "xla", lambda: True) == "xla"
    assert _dispatch.picks_lowering("auto") and not _dispatch.picks_lowering("xla")
    kernels.set_default_impl("xla")
    try:
        assert _dispatch.resolve_impl("op", "auto", lambda: True) == "xla"
        assert _dispatch.resolve_impl("op", "pallas", lambda: False) == "pallas"
        assert not _dispatch.picks_lowering("auto")
    finally:
        kernels.set_default_impl("auto")
    assert kernels.get_default_impl() == "auto"


def test_bad_impls_are_refused_by_name():
    with pytest.raises(ValueError, match=r"myop: impl must be one of \('auto', 'pallas', 'xla'\)"):
        _dispatch.resolve_impl("myop", "triton", None)
    with pytest.raises(ValueError, match="myop: has no Pallas kernel"):
        _dispatch.resolve_impl("myop", "pallas", None)
    with pytest.raises(ValueError, match="set_default_impl: impl must be one of"):
        kernels.set_default_impl("fast")


@pytest.fixture
def fake_gpu_table(monkeypatch):
    ops = {"softmax": {"float32": [[512, 1.0, 2.0], [32768, 2.0, 2.1]]},
           "cross_entropy": {"float32": [[8192, 1.0, 3.0]]}}
    other_gpu = {"softmax": {"float32": [[512, 2.0, 1.0]]}}
    tables = {"margin": 0.15, "devices": {jax.devices()[0].device_kind: {"ops": ops},
                                          "Some Other GPU": {"ops": other_gpu}}}
    monkeypatch.setattr(_dispatch, "_tables", lambda: tables)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    return tables


def test_auto_follows_the_table_only_on_gpu(fake_gpu_table):
    assert _dispatch.measured_faster("softmax", jnp.float32, 600)  # nearest: 512, 2x faster
    assert not _dispatch.measured_faster("softmax", jnp.float32, 30000)  # within the margin
    assert not _dispatch.measured_faster("softmax", jnp.bfloat16, 600)  # dtype not measured
    assert not _dispatch.measured_faster("layer_norm", jnp.float32, 600)  # op not measured
    assert _dispatch.measured_faster("cross_entropy", jnp.float32, 50000)


def test_auto_reads_only_this_gpu_models_table(fake_gpu_table):
    assert _dispatch.measured_ms("softmax", jnp.float32, 512) == (1.0, 2.0)
    this_gpu = fake_gpu_table["devices"].pop(jax.devices()[0].device_kind)
    fake_gpu_table["devices"]["Some Other GPU"] = this_gpu  # measured elsewhere only
    assert _dispatch.measured_ms("softmax", jnp.float32, 512) is None
    assert not _dispatch.measured_faster("cross_entropy", jnp.float32, 8192)


def test_the_shipped_table_is_per_gpu_model():
    tables = _dispatch._tables()
    assert tables["margin"] > 0 and tables["devices"]
    for kind, table in tables["devices"].items():
        assert isinstance(kind, str) and kind, kind  # JAX's device_kind
        for op, by_dtype in table["ops"].items():
            for dtype, entries in by_dtype.items():
                jnp.dtype(dtype)  # a dtype name
                assert all(len(e) == 3 and e[0] > 0 and min(e[1:]) > 0 for e in entries), op


def test_auto_is_xla_off_the_gpu(rng, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert not _dispatch.measured_faster("cross_entropy", jnp.float32, 8192)
    x = normal(rng, (4, 9), jnp.float32)
    assert jnp.array_equal(reductions.sum(x), reductions.sum(x, impl="xla"))
    assert jnp.array_equal(kernels.batch_norm(x)[0], kernels.batch_norm(x, impl="xla")[0])


def test_measured_ms_gives_the_nearest_entry_and_can_refuse_to_extrapolate(fake_gpu_table):
    assert _dispatch.measured_ms("softmax", jnp.float32, 600) == (1.0, 2.0)
    assert _dispatch.measured_ms("softmax", jnp.float32, 600, within=2.0) == (1.0, 2.0)
    assert _dispatch.measured_ms("softmax", jnp.float32, 4000, within=2.0) is None
    # above the largest measured size (32768) with above_largest; below the smallest, never
    assert _dispatch.measured_ms("softmax", jnp.float32, 1 << 20, within=2.0) is None
    assert _dispatch.measured_ms("softmax", jnp.float32, 1 << 20, within=2.0,
                                 above_largest=True) == (2.0, 2.1)
    assert _dispatch.measured_ms("softmax", jnp.float32, 64, within=2.0,
                                 above_largest=True) is None
    assert _dispatch.measured_ms("softmax", jnp.float32, 0) is None
    # halfway between 512 and 32768 on the log scale: the smaller's entry, or with
    # above_largest (a lead over XLA that grows with the size) the larger's
    assert _dispatch.measured_ms("softmax", jnp.float32, 4096) == (1.0, 2.0)
    assert _dispatch.measured_ms("softmax", jnp.float32, 4096, above_largest=True) == (2.0, 2.1)
    assert _dispatch.beats_xla((1.0, 2.0)) and not _dispatch.beats_xla((1.0, 1.1))
    assert not _dispatch.beats_xla(None)


@pytest.mark.parametrize("capability, softmax, attention", [
    ("9.0", (1.0, 2.0), (0.5, 9.0)),  # its own softmax; the 9.0 model's attention stands in
    ("8.0", (1.0, 2.0), (7.0, 9.0)),  # the 8.0 model's, not the 9.0 one's
    (None, (1.0, 2.0), None),  # no compute capability known
])
def test_a_model_of_the_same_compute_capability_stands_in_for_unmeasured_ops(
        fake_gpu_table, monkeypatch, capability, softmax, attention):
    fake_gpu_table["devices"]["Sibling GPU"] = {"compute_capability": "9.0", "ops": {
        "softmax": {"float32": [[512, 3.0, 1.0]]},
        "attention_causal": {"bfloat16": [[4096, 0.5, 9.0]]}}}
    fake_gpu_table["devices"]["Older GPU"] = {"compute_capability": "8.0", "ops": {
        "attention_causal": {"bfloat16": [[4096, 7.0, 9.0]]}}}
    fake_gpu_table["devices"][jax.devices()[0].device_kind]["compute_capability"] = capability
    monkeypatch.setattr(_dispatch, "compute_capability", lambda: capability)
    assert _dispatch.measured_ms("softmax", jnp.float32, 512) == softmax
    assert _dispatch.measured_ms("attention_causal", jnp.bfloat16, 4096) == attention
    assert _dispatch.measured_ms("attention_causal", jnp.float32, 4096) is None  # no dtype


def test_the_shipped_hopper_entries_stand_in_for_an_unswept_hopper(monkeypatch):
    """An H100 (its entry has no attention) borrows the H200's attention entries, and keeps its
    own for the ops it has."""
    tables = _dispatch._tables()
    h100 = tables["devices"]["NVIDIA H100 80GB HBM3"]
    monkeypatch.setattr(_dispatch, "_device_kind", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(_dispatch, "compute_capability", lambda: "9.0")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    h200_attention = tables["devices"]["NVIDIA H200"]["ops"]["attention_causal_fwd"]["bfloat16"]
    assert "attention_causal_fwd" not in h100["ops"]
    assert _dispatch.measured_ms("attention_causal_fwd", jnp.bfloat16, 4096) == tuple(
        next(e for e in h200_attention if e[0] == 4096)[1:])
    own = h100["ops"]["softmax"]["float32"][0]
    assert _dispatch.measured_ms("softmax", jnp.float32, own[0]) == tuple(own[1:])
