"""Losses of torsh_fn.nn.functional against torch.nn.functional: values and gradients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torsh_fn.nn.functional as F
from tests.oracle import assert_close, check_vs_torch, to_torch

REDUCTIONS = ("none", "mean", "sum")
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
HYPOTHESIS = settings(max_examples=10, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def normal(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def uniform(rng, shape, low=0.0, high=1.0):
    return rng.uniform(low, high, shape).astype(np.float32)


def signs(rng, shape):
    return rng.choice(np.array([-1.0, 1.0], np.float32), shape)


def labels(rng, shape, classes, ignore_index=None):
    out = rng.integers(0, classes, shape)
    if ignore_index is not None and out.size > 1:
        out.flat[rng.integers(0, out.size)] = ignore_index
    return out


@dataclass
class Case:
    """One loss call: positional numpy ``inputs`` and ``kwargs`` (numpy arrays converted for each
    side), and the positions whose gradients torch defines."""

    name: str
    inputs: tuple
    kwargs: dict = field(default_factory=dict)
    grad: list[int] = field(default_factory=lambda: [0])


def _convert(kwargs: dict, to: Any) -> dict:
    return {k: to(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


def _each_reduction(fn, kwargs: dict, reductions):
    return lambda *xs: tuple(fn(*xs, **kwargs, reduction=r) for r in reductions)


def under_vmap(fn):
    """``fn`` run by ``jax.vmap`` on two stacked copies of its arrays; the first result."""
    def run(*xs):
        stacked = [jnp.stack([x, x]) if isinstance(x, jax.Array) else x for x in xs]
        in_axes = [0 if isinstance(x, jax.Array) else None for x in xs]
        return jax.tree.map(lambda out: out[0], jax.vmap(fn, in_axes=in_axes)(*stacked))
    return run


def check_case(case: Case, reductions=REDUCTIONS, variant=None, rng=None, **tol) -> None:
    """Values and gradients of ``case`` for every reduction in one call (one compilation)."""
    ours = _each_reduction(getattr(F, case.name), _convert(case.kwargs, jnp.asarray), reductions)
    theirs = _each_reduction(getattr(TF, case.name), _convert(case.kwargs, to_torch), reductions)
    check_vs_torch(ours, theirs, *case.inputs, grad=case.grad, variant=variant, rng=rng, **tol)


# Each maker: (rng, shape) -> Case, where shape is (N, C, *extra) with N, C >= 1.
def _pointwise(name, make_target, grad=(0, 1), **kwargs):
    return lambda rng, shape: Case(name, (normal(rng, shape), make_target(rng, shape)), kwargs,
                                   list(grad))


def _class_scores(name, **kwargs):
    def make(rng, shape):
        shape = shape[:2]
        return Case(name, (normal(rng, shape), labels(rng, shape[:1], shape[1])),
                    dict(kwargs, weight=uniform(rng, shape[1:], 0.2, 2.0)))
    return make


MAKERS = {
    "mse_loss": _pointwise("mse_loss", normal),
    "l1_loss": _pointwise("l1_loss", normal),
    "smooth_l1_loss": _pointwise("smooth_l1_loss", normal, beta=0.7),
    "huber_loss": _pointwise("huber_loss", normal, delta=0.6),
    "soft_margin_loss": _pointwise("soft_margin_loss", signs, grad=[0]),
    "hinge_embedding_loss": lambda rng, shape: Case(
        "hinge_embedding_loss", (normal(rng, shape), signs(rng, shape)), {"margin": 0.8}),
    "kl_div": _pointwise("kl_div", uniform),
    "kl_div_log_target": lambda rng, shape: Case(
        "kl_div", (normal(rng, shape), normal(rng, shape)), {"log_target": True}, [0, 1]),
    "poisson_nll_loss": _pointwise("poisson_nll_loss", lambda r, s: uniform(r, s, 0, 3),
                                   full=True),
    "poisson_nll_loss_rates": lambda rng, shape: Case(
        "poisson_nll_loss", (uniform(rng, shape, 0.1, 2), uniform(rng, shape, 0, 3)),
        {"log_input": False}, [0, 1]),
    "gaussian_nll_loss": lambda rng, shape: Case(
        "gaussian_nll_loss",
        (normal(rng, shape), normal(rng, shape), uniform(rng, shape[:-1], 0.1, 2.0)),
        {"full": True}, [0, 1, 2]),
    "binary_cross_entropy": lambda rng, shape: Case(
        "binary_cross_entropy", (uniform(rng, shape, 0.02, 0.98), uniform(rng, shape)),
        {"weight": uniform(rng, shape[-1:], 0.5, 2)}, [0, 1]),
    "binary_cross_entropy_with_logits": lambda rng, shape: Case(
        "binary_cross_entropy_with_logits", (normal(rng, shape, 3), uniform(rng, shape)),
        {"weight": uniform(rng, shape[-1:], 0.5, 2), "pos_weight": uniform(rng, shape[-1:], 0, 3)},
        [0, 1]),
    "margin_ranking_loss": lambda rng, shape: Case(
        "margin_ranking_loss", (normal(rng, shape), normal(rng, shape), signs(rng, shape)),
        {"margin": 0.3}, [0, 1]),
    "cross_entropy": lambda rng, shape: Case(
        "cross_entropy",
        (normal(rng, shape, 3), labels(rng, shape[:1] + shape[2:], shape[1], ignore_index=-1)),
        {"weight": uniform(rng, shape[1:2], 0.2, 2), "ignore_index": -1, "label_smoothing": 0.15}),
    "cross_entropy_probs": lambda rng, shape: Case(
        "cross_entropy",
        (normal(rng, shape, 3), np.array(jax.nn.softmax(normal(rng, shape), axis=1))),
        {"weight": uniform(rng, shape[1:2], 0.2, 2), "label_smoothing": 0.1}, [0, 1]),
    "nll_loss": lambda rng, shape: Case(
        "nll_loss",
        (normal(rng, shape), labels(rng, shape[:1] + shape[2:], shape[1], ignore_index=-100)),
        {"weight": uniform(rng, shape[1:2], 0.2, 2)}),
    "multi_margin_loss": _class_scores("multi_margin_loss", p=2, margin=0.7),
    "multi_margin_loss_p1": _class_scores("multi_margin_loss"),
    "multilabel_soft_margin_loss": lambda rng, shape: Case(
        "multilabel_soft_margin_loss",
        (normal(rng, shape[:2]), rng.integers(0, 2, shape[:2]).astype(np.float32)),
        {"weight": uniform(rng, shape[1:2], 0.5, 2)}, [0, 1]),
    "multilabel_margin_loss": lambda rng, shape: Case(
        "multilabel_margin_loss",
        (normal(rng, shape[:2]), np.stack([np.concatenate(
            [rng.permutation(shape[1])[:k], -np.ones(shape[1] - k, np.int64)])
            for k in rng.integers(0, shape[1] + 1, shape[0])]))),
    "cosine_embedding_loss": lambda rng, shape: Case(
        "cosine_embedding_loss",
        (normal(rng, shape[:2]), normal(rng, shape[:2]), signs(rng, shape[:1])),
        {"margin": 0.2}, [0, 1]),
    "triplet_margin_loss": lambda rng, shape: Case(
        "triplet_margin_loss", tuple(normal(rng, shape[:2]) for _ in range(3)),
        {"margin": 0.5, "p": 3, "swap": True}, [0, 1, 2]),
    "triplet_margin_loss_l2": lambda rng, shape: Case(
        "triplet_margin_loss", tuple(normal(rng, shape[:2]) for _ in range(3)), {}, [0, 1, 2]),
    "triplet_margin_with_distance_loss": lambda rng, shape: Case(
        "triplet_margin_with_distance_loss", tuple(normal(rng, shape[:2]) for _ in range(3)),
        {"margin": 2.0, "swap": True}, [0, 1, 2]),
}


@pytest.mark.parametrize("maker", sorted(MAKERS))
def test_matches_torch_every_reduction(maker, variant, rng):
    check_case(MAKERS[maker](rng, (5, 3, 2)), variant=variant, rng=rng)


@HYPOTHESIS
@given(maker=st.sampled_from(sorted(MAKERS)),
       shape=st.tuples(st.integers(1, 4), st.integers(1, 5)).flatmap(
           lambda nc: st.lists(st.integers(1, 3), max_size=1).map(lambda ex: nc + tuple(ex))),
       seed=st.integers(0, 2**31))
def test_matches_torch_any_shape_under_jit_and_vmap(maker, shape, seed):
    rng = np.random.default_rng(seed)
    check_case(MAKERS[maker](rng, shape), variant=lambda fn: jax.jit(under_vmap(fn)), rng=rng)


@pytest.mark.parametrize("maker", ["cross_entropy", "ctc"])
def test_vmap_over_different_problems_matches_one_by_one(maker, rng):
    if maker == "ctc":
        lp = jax.nn.log_softmax(normal(rng, (3, 6, 2, 4)), axis=-1)
        fn = lambda lp: F.ctc_loss(lp, jnp.array([[1, 2], [3, 3]]), [6, 5], [2, 2])
        batch = (lp,)
    else:
        cases = [MAKERS[maker](rng, (4, 5)) for _ in range(3)]
        batch = tuple(np.stack(xs) for xs in zip(*(c.inputs for c in cases)))
        fn = lambda *xs: F.cross_entropy(*xs, label_smoothing=0.1)
    together = jax.jit(jax.vmap(fn))(*batch)
    one_by_one = jnp.stack([jax.jit(fn)(*(x[i] for x in batch)) for i in range(3)])
    assert_close(together, one_by_one, rtol=1e-6, atol=1e-6)


def test_bfloat16_forward_within_bfloat16_tolerance(rng):
    """bfloat16 in, bfloat16 out, close to torch in float32 on the same (rounded) numbers."""
    def rounded(x, dtype):
        if isinstance(x, np.ndarray) and x.dtype == np.float32:
            return x.astype(ml_dtypes.bfloat16).astype(dtype)
        return x

    for maker in sorted(MAKERS):
        case = MAKERS[maker](rng, (5, 3, 2))
        ours = jax.jit(_each_reduction(
            getattr(F, case.name),
            _convert({k: rounded(v, ml_dtypes.bfloat16) for k, v in case.kwargs.items()},
                     jnp.asarray), REDUCTIONS))(
            *(jnp.asarray(rounded(x, ml_dtypes.bfloat16)) for x in case.inputs))
        theirs = _each_reduction(
            getattr(TF, case.name),
            _convert({k: rounded(v, np.float32) for k, v in case.kwargs.items()}, to_torch),
            REDUCTIONS)(*(to_torch(rounded(x, np.float32)) for x in case.inputs))
        for out, expected in zip(ours, theirs):
            assert out.dtype == jnp.bfloat16, maker
            assert_close(out, expected, rtol=1e-2, atol=1e-2, err_msg=maker)


# --------------------------------------------------------------- cross_entropy and nll_loss


@pytest.mark.parametrize(("weighted", "smoothing"), [(False, 0.3), (True, 0.0)])
def test_cross_entropy_weight_smoothing_ignore_index(weighted, smoothing, rng):
    x = normal(rng, (6, 5, 3), 2)
    y = labels(rng, (6, 3), 5)
    y[0, :2] = 7  # ignore_index
    kwargs = dict(ignore_index=7, label_smoothing=smoothing)
    if weighted:
        kwargs["weight"] = uniform(rng, (5,), 0.1, 3)
    check_case(Case("cross_entropy", (x, y), kwargs), variant=jax.jit, rng=rng)


@pytest.mark.parametrize("shape", [(4, 1), (2, 3, 2, 3)])
def test_cross_entropy_single_class_and_k_dim(shape, rng):
    x, y = normal(rng, shape), labels(rng, shape[:1] + shape[2:], shape[1])
    check_case(Case("cross_entropy", (x, y), {"label_smoothing": 0.2}), variant=jax.jit)


def test_cross_entropy_unbatched_is_a_batch_of_one(rng):
    # PyTorch's backward fails on unbatched inputs with reduction="none"; we compare with N=1.
    x, y = jnp.asarray(normal(rng, (7,))), jnp.asarray(3)

    def both(x):
        kwargs = {"label_smoothing": 0.2, "weight": jnp.arange(1.0, 8.0)}
        return (jnp.stack([F.cross_entropy(x, y, reduction=r, **kwargs) for r in REDUCTIONS]),
                jnp.stack([F.cross_entropy(x[None], y[None], reduction=r, **kwargs).reshape(())
                           for r in REDUCTIONS]))

    unbatched, batched = jax.jit(both)(x)
    assert_close(unbatched, batched, rtol=1e-6, atol=1e-6)
    grads = jax.jit(jax.jacrev(both))(x)
    assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-6)


def test_cross_entropy_extreme_logits_are_finite():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4]], np.float32)
    y = np.array([1, 0, 2])
    check_case(Case("cross_entropy", (x, y), {"label_smoothing": 0.1}), ["none"], jax.jit)
    grad = jax.jit(jax.grad(lambda x: F.cross_entropy(x, jnp.asarray(y))))(jnp.asarray(x))
    assert np.isfinite(np.asarray(grad)).all()


def test_cross_entropy_all_ignored_mean_is_nan_like_torch():
    out = F.cross_entropy(jnp.ones((2, 3)), jnp.array([-100, -100]))
    assert np.isnan(out)


def test_out_of_range_class_gives_nan_not_a_wrong_number():
    out = F.cross_entropy(jnp.ones((2, 3)), jnp.array([0, 3]), reduction="none")
    assert np.isfinite(out[0]) and np.isnan(out[1])
    assert np.isnan(F.nll_loss(jnp.ones((2, 3)), jnp.array([-1, 0])))


def test_cross_entropy_goes_through_the_kernel(monkeypatch):
    from torsh_fn.nn._functional import loss

    calls = []
    kernel = loss._ce_kernel
    monkeypatch.setattr(loss, "_ce_kernel", lambda *a, **k: calls.append(k) or kernel(*a, **k))
    F.cross_entropy(jnp.ones((2, 3)), jnp.array([0, 1]), label_smoothing=0.1)
    assert calls == [{"ignore_index": -100, "label_smoothing": 0.1}]


# --------------------------------------------------------------- binary cross-entropy corners


def test_binary_cross_entropy_at_zero_and_one():
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.5, 1e-30], np.float32)
    t = np.array([0.0, 1.0, 0.0, 1.0, 0.3, 0.5], np.float32)
    check_case(Case("binary_cross_entropy", (x, t)))
    # The target gradient is that of the clamped logs: finite, where PyTorch's is infinite.
    grad_t = jax.grad(lambda t: F.binary_cross_entropy(jnp.asarray(x), t, reduction="sum"))(t)
    np.testing.assert_allclose(grad_t[:4], [100, 100, -100, -100])


def test_binary_cross_entropy_with_logits_at_100(rng):
    x = np.array([[100.0, -100.0, 50.0, -30.0]], np.float32)
    t = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
    kwargs = {"pos_weight": uniform(rng, (4,), 0.5, 2), "weight": uniform(rng, (1, 4), 0.5, 2)}
    check_case(Case("binary_cross_entropy_with_logits", (x, t), kwargs, [0, 1]))


# --------------------------------------------------------------- other options


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_elementwise_weight(name, rng):
    x, t, w = normal(rng, (4, 3)), normal(rng, (4, 3)), uniform(rng, (4, 3), 0, 2)
    check_case(Case(name, (x, t), {"weight": w}, [0, 1]))


def test_l1_gradient_at_zero_difference_is_zero_like_torch():
    x = np.array([1.0, 2.0], np.float32)
    check_case(Case("l1_loss", (x, x.copy()), {}, [0, 1]))
    check_case(Case("smooth_l1_loss", (x, x + 1), {"beta": 0.0}, [0, 1]))


def test_kl_div_batchmean(rng):
    x = np.array(jax.nn.log_softmax(normal(rng, (5, 4))))
    t = np.array(jax.nn.softmax(normal(rng, (5, 4))))
    check_case(Case("kl_div", (x, t), {}, [0, 1]), ["batchmean"])
    check_case(Case("kl_div", (x, np.log(t)), {"log_target": True}, [0, 1]), ["batchmean"])


@pytest.mark.parametrize("var_shape", [(4, 3), (4, 1, 2)])
def test_gaussian_nll_variance_shapes(var_shape, rng):
    x, t = normal(rng, (4, 3, 2)), normal(rng, (4, 3, 2))
    var = uniform(rng, var_shape, 0.0, 2.0)
    var.flat[0] = 1e-9  # clamped to eps, gradient passed straight through
    # The clamped entry's gradient (~1e8) is a difference of terms of order 1 / eps**2 ... 1 / eps:
    # float32 cancellation there has reached 2.2e-4 relative (seen once in a full run).
    check_case(Case("gaussian_nll_loss", (x, t, var), {}, [0, 1, 2]), variant=jax.jit, rtol=1e-3)


def test_gaussian_nll_float_variance(rng):
    x, t = normal(rng, (4, 3)), normal(rng, (4, 3))
    check_case(Case("gaussian_nll_loss", (x, t, 0.5), {}, [0, 1]), ["sum"])


@pytest.mark.parametrize(("size_average", "reduce"),
                         [(False, None), (None, False)])
def test_legacy_size_average_and_reduce(size_average, reduce, rng):
    x, t = normal(rng, (4, 3)), labels(rng, (4,), 3)
    with pytest.warns(UserWarning, match="size_average and reduce are deprecated"):
        ours = F.cross_entropy(jnp.asarray(x), jnp.asarray(t), size_average=size_average,
                               reduce=reduce)
    with pytest.warns(UserWarning):
        theirs = TF.cross_entropy(to_torch(x), to_torch(t), size_average=size_average,
                                  reduce=reduce)
    assert_close(ours, theirs)


def test_mse_broadcasts_a_smaller_target_with_a_warning_like_torch(rng):
    x, t = normal(rng, (4, 3)), normal(rng, (3,))
    with pytest.warns(UserWarning, match="different to the input size"):
        out = F.mse_loss(jnp.asarray(x), jnp.asarray(t))
    assert_close(out, TF.mse_loss(to_torch(x), to_torch(t)))


# --------------------------------------------------------------- ctc_loss


def ctc_case(rng, t=7, n=3, c=5, s=3):
    """Logits (T, N, C), padded targets without blanks (0), lengths; one sample impossible."""
    logits = normal(rng, (t, n, c), 2)
    targets = rng.integers(1, c, (n, s))
    targets[0, 1] = targets[0, 0]  # a repeat needs a blank in between
    input_lengths = np.array([t, t - 2, 2][:n])
    target_lengths = np.array([s, s - 1, 2][:n])  # the last: 2 labels in 2 frames
    targets[-1, :2] = 4
    return logits, targets, input_lengths, target_lengths


def check_ctc(logits, targets, input_lengths, target_lengths, variant=jax.jit, rng=None,
              **kwargs):
    """Gradients through log_softmax, as models use it (see docs/functional_losses.md)."""
    def ours(x):
        return tuple(F.ctc_loss(jax.nn.log_softmax(x, -1), targets, input_lengths,
                                target_lengths, reduction=r, **kwargs) for r in REDUCTIONS)

    def theirs(x):
        return tuple(TF.ctc_loss(torch.log_softmax(x, -1), torch.as_tensor(targets),
                                 torch.as_tensor(input_lengths), torch.as_tensor(target_lengths),
                                 reduction=r, **kwargs) for r in REDUCTIONS)

    check_vs_torch(ours, theirs, logits, variant=variant, rng=rng, rtol=1e-4, atol=1e-5)


def test_ctc_padded_targets(rng):
    logits, targets, input_lengths, target_lengths = ctc_case(rng)
    check_ctc(logits, targets, input_lengths, target_lengths, rng=rng, zero_infinity=True)


def test_ctc_impossible_alignment_is_inf_without_zero_infinity(rng):
    logits, targets, input_lengths, target_lengths = ctc_case(rng)
    lp = jax.nn.log_softmax(logits, -1)
    out = jax.jit(lambda lp: F.ctc_loss(lp, targets, input_lengths, target_lengths,
                                        reduction="none"))(lp)
    theirs = TF.ctc_loss(to_torch(np.asarray(lp)), to_torch(targets), to_torch(input_lengths),
                         to_torch(target_lengths), reduction="none")
    assert np.isinf(out[-1])
    assert_close(out, theirs, rtol=1e-5)


def test_ctc_concatenated_targets_other_blank_and_jit(rng):
    logits = normal(rng, (8, 3, 6))
    target_lengths = np.array([2, 0, 4])
    targets = rng.integers(0, 5, target_lengths.sum())
    input_lengths = np.array([8, 3, 7])  # room for 4 repeated labels and the blanks between
    check_ctc(logits, targets, input_lengths, target_lengths, blank=5)
    # Lengths traced by jit: the padded width falls back to the total target length.
    jitted = jax.jit(lambda lp, tl: F.ctc_loss(lp, targets, input_lengths, tl, blank=5))
    lp = jax.nn.log_softmax(logits, -1)
    theirs = TF.ctc_loss(to_torch(np.asarray(lp)), to_torch(targets), to_torch(input_lengths),
                         to_torch(target_lengths), blank=5)
    assert_close(jitted(lp, target_lengths), theirs, rtol=1e-5)


@pytest.mark.parametrize("targets", [np.zeros((2, 0), np.int64), np.zeros((0,), np.int64)])
def test_ctc_empty_targets_and_empty_inputs(targets, rng):
    lp = np.array(jax.nn.log_softmax(normal(rng, (4, 2, 3)), -1))
    ours = jax.jit(lambda lp: F.ctc_loss(lp, targets, [4, 0], [0, 0], reduction="none"))(lp)
    theirs = TF.ctc_loss(to_torch(lp), to_torch(targets), torch.tensor([4, 0]),
                         torch.tensor([0, 0]), reduction="none")
    assert_close(ours, theirs)


def test_ctc_unbatched(rng):
    logits = normal(rng, (6, 4))
    check_ctc(logits, np.array([1, 2, 2]), 6, 3)


# --------------------------------------------------------------- bad input


def test_bad_input_errors():
    x, y = jnp.ones((4, 3)), jnp.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \(4,\) for "
                                         r"input of shape \(4, 3\), got \(4, 1\)"):
        F.cross_entropy(x, y[:, None])
    with pytest.raises(TypeError, match="cross_entropy: class-index target must hold integers, "
                                        "got dtype bool"):
        F.cross_entropy(x, y > 0)
    with pytest.raises(ValueError, match=r"cross_entropy: expected target \(class probabilities\)"
                                         r" of the input's shape \(4, 3\), got \(4,\)"):
        F.cross_entropy(x, y.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"nll_loss: reduction must be one of \('none', 'mean', "
                                         r"'sum'\), got 'avg'"):
        F.nll_loss(x, y, reduction="avg")
    with pytest.raises(ValueError, match=r"nll_loss: expected weight of shape \(3,\), one per "
                                         r"class, got \(2,\)"):
        F.nll_loss(x, y, weight=jnp.ones(2))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        F.cross_entropy(x, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: expected target of the input's "
                                         r"shape \(4, 3\), got \(4,\)"):
        F.binary_cross_entropy(x, x[:, 0])
    with pytest.raises(ValueError, match="mse_loss: target of shape \\(5,\\) does not broadcast"):
        F.mse_loss(x, jnp.ones(5))
    with pytest.raises(ValueError, match="multi_margin_loss: p must be 1 or 2, got 3"):
        F.multi_margin_loss(x, y, p=3)
    with pytest.raises(ValueError, match="gaussian_nll_loss: expected var of shape"):
        F.gaussian_nll_loss(x, x, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="triplet_margin_loss: expected inputs with the same "
                                         "number of dimensions"):
        F.triplet_margin_loss(x, x, x[0])
    with pytest.raises(ValueError, match="kl_div: reduction must be one of"):
        F.kl_div(x, x, reduction="batch")
    with pytest.raises(TypeError, match="ctc_loss: targets must hold integers"):
        F.ctc_loss(jnp.ones((5, 2, 3)), jnp.ones((2, 2)), [5, 5], [2, 2])
    with pytest.raises(ValueError, match=r"ctc_loss: expected input_lengths of integers with "
                                         r"shape \(2,\)"):
        F.ctc_loss(jnp.ones((5, 2, 3)), jnp.ones((2, 2), int), [5, 5, 5], [2, 2])
