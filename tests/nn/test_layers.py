"""Every layer against its PyTorch twin: same state_dict keys and shapes, and after loading the
torch weights the same outputs and the same gradients (input and parameters), eager and jitted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torsh_fn
from tests.oracle import assert_close, to_numpy
from torsh_fn import func, nn


def check_layer(ours, theirs, *inputs, variant=None, rng=None, tol=1e-5, train=False):
    """Keys, shapes, outputs and gradients of ``ours`` equal those of the torch layer."""
    ours.train(train)
    theirs.train(train)
    t_sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(t_sd)
    for (k, a), b in zip(ours.state_dict().items(), t_sd.values()):
        assert tuple(a.shape) == tuple(b.shape), k
    ours.load_state_dict(t_sd)
    rng = rng or np.random.default_rng(0)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    t_params = dict(theirs.named_parameters())
    t_inputs = [torch.from_numpy(x.copy()).requires_grad_(x.dtype.kind == "f") for x in inputs]
    t_out = theirs(*t_inputs)
    t_out = t_out[0] if isinstance(t_out, tuple) else t_out
    cot = rng.standard_normal(t_out.shape).astype(np.float32)

    def run(p, *xs):
        out = func.functional_call(ours, p, xs)
        return out[0] if isinstance(out, tuple) else out

    fn = variant(run) if variant is not None else run
    j_inputs = [jnp.asarray(x) for x in inputs]
    assert_close(fn(params, *j_inputs), t_out, rtol=tol, atol=tol)
    float_pos = [i for i, x in enumerate(inputs) if x.dtype.kind == "f"]
    grads = jax.grad(lambda p, *xs: jnp.sum(fn(p, *xs) * cot), argnums=(0, *[
        1 + i for i in float_pos]))(params, *j_inputs)
    t_out.backward(torch.from_numpy(cot))
    for k, g in grads[0].items():
        expected = t_params[k].grad
        assert_close(g, np.zeros(g.shape) if expected is None else expected, rtol=tol, atol=tol,
                     err_msg=f"grad of {k}")
    for i, g in zip(float_pos, grads[1:]):
        assert_close(g, t_inputs[i].grad, rtol=tol, atol=tol, err_msg=f"grad of input {i}")


def _x(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


LAYERS = {
    "linear": (lambda m: m.Linear(5, 3), (4, 5)),
    "linear_nobias_3d": (lambda m: m.Linear(5, 3, bias=False), (2, 3, 5)),
    "conv1d": (lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), (2, 3, 9)),
    "conv2d_groups": (lambda m: m.Conv2d(4, 6, (3, 2), padding="same", groups=2), (2, 4, 7, 5)),
    "conv2d_reflect": (lambda m: m.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"),
                       (1, 3, 6, 5)),
    "conv3d": (lambda m: m.Conv3d(2, 3, 2, dilation=1), (1, 2, 4, 5, 3)),
    "conv_transpose1d": (lambda m: m.ConvTranspose1d(3, 2, 3, stride=2), (2, 3, 5)),
    "conv_transpose2d": (lambda m: m.ConvTranspose2d(4, 2, 3, stride=2, padding=1,
                                                     output_padding=1, groups=2), (1, 4, 3, 5)),
    "maxpool2d": (lambda m: m.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 5)),
    "avgpool1d": (lambda m: m.AvgPool1d(2), (2, 3, 7)),
    "adaptive_avg2d": (lambda m: m.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 5)),
    "adaptive_max1d": (lambda m: m.AdaptiveMaxPool1d(3), (2, 3, 7)),
    "layernorm": (lambda m: m.LayerNorm((3, 5)), (2, 3, 5)),
    "groupnorm": (lambda m: m.GroupNorm(2, 4), (3, 4, 5)),
    "instancenorm2d": (lambda m: m.InstanceNorm2d(3, affine=True), (2, 3, 4, 5)),
    "rmsnorm": (lambda m: m.RMSNorm(5), (3, 5)),
    "layernorm_nobias": (lambda m: m.LayerNorm(5, bias=False), (2, 3, 5)),
    "groupnorm_nobias": (lambda m: m.GroupNorm(2, 4, bias=False), (3, 4, 5)),
    "batchnorm2d_nobias_eval": (lambda m: m.BatchNorm2d(3, bias=False), (2, 3, 4, 5)),
    "batchnorm1d_eval": (lambda m: m.BatchNorm1d(5), (4, 5)),
    "prelu": (lambda m: m.PReLU(3), (2, 3, 4)),
    "flatten": (lambda m: m.Flatten(), (2, 3, 4)),
    "unflatten": (lambda m: m.Unflatten(1, (2, 3)), (4, 6)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_torch(name, rng, variant):
    make, shape = LAYERS[name]
    torch.manual_seed(0)
    check_layer(make(nn), make(torch.nn), _x(rng, *shape), variant=variant, rng=rng)


@pytest.mark.parametrize("name", ["BatchNorm2d", "InstanceNorm1d"])
def test_training_norm_matches_torch(name, rng):
    shape = (3, 4, 5, 6) if name == "BatchNorm2d" else (3, 4, 5)
    kwargs = {"track_running_stats": True} if name == "InstanceNorm1d" else {}
    ours, theirs = getattr(nn, name)(4, **kwargs), getattr(torch.nn, name)(4, **kwargs)
    check_layer(ours, theirs, _x(rng, *shape), train=True, rng=rng)


ACTIVATIONS = [
    ("ReLU", ()), ("ReLU6", ()), ("ELU", (0.7,)), ("CELU", (1.3,)), ("SELU", ()),
    ("GELU", ()), ("GELU", ("tanh",)), ("SiLU", ()), ("Mish", ()), ("Sigmoid", ()), ("Tanh", ()),
    ("LeakyReLU", (0.2,)), ("Hardtanh", (-0.5, 0.5)), ("Hardswish", ()), ("Hardsigmoid", ()),
    ("LogSigmoid", ()), ("Softplus", (2.0,)), ("Softshrink", (0.3,)), ("Hardshrink", (0.3,)),
    ("Softsign", ()), ("Tanhshrink", ()), ("Threshold", (0.1, -1.0)), ("GLU", ()),
    ("Softmax", (1,)), ("LogSoftmax", (-1,)), ("Softmin", (0,)),
]


@pytest.mark.parametrize(("name", "args"), ACTIVATIONS, ids=[f"{n}{a}" for n, a in ACTIVATIONS])
def test_activation_module_matches_torch(name, args, rng):
    x = _x(rng, 3, 4)
    ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    assert repr(ours) == repr(theirs)
    assert_close(ours(jnp.asarray(x)), theirs(torch.from_numpy(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["Linear", "Conv2d", "GroupNorm", "LayerNorm", "Embedding",
                                  "LSTM", "MultiheadAttention", "MaxPool2d", "Dropout"])
def test_repr_matches_torch(name):
    args = {"Linear": (3, 4), "Conv2d": (3, 4, 3), "GroupNorm": (2, 4), "LayerNorm": (4,),
            "Embedding": (10, 3), "LSTM": (3, 4), "MultiheadAttention": (8, 2),
            "MaxPool2d": (2,), "Dropout": (0.2,)}[name]
    assert repr(getattr(nn, name)(*args)) == repr(getattr(torch.nn, name)(*args))


def test_rnn_family_matches_torch(rng):
    for cls, kwargs in [("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
                        ("LSTM", {"proj_size": 2}), ("GRU", {"num_layers": 2}),
                        ("RNN", {"nonlinearity": "relu", "bidirectional": True})]:
        check_layer(getattr(nn, cls)(3, 4, **kwargs), getattr(torch.nn, cls)(3, 4, **kwargs),
                    _x(rng, 5, 2, 3), rng=rng, tol=1e-5)
    for cls in ("LSTMCell", "GRUCell", "RNNCell"):
        ours, theirs = getattr(nn, cls)(3, 4), getattr(torch.nn, cls)(3, 4)
        ours.load_state_dict(theirs.state_dict())
        x = _x(rng, 2, 3)
        out, t_out = ours(jnp.asarray(x)), theirs(torch.from_numpy(x))
        for a, b in zip(jax.tree.leaves(out), t_out if isinstance(t_out, tuple) else [t_out]):
            assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_rnn_hidden_state_and_unbatched_input(rng):
    ours, theirs = nn.GRU(3, 4, num_layers=2), torch.nn.GRU(3, 4, num_layers=2)
    ours.load_state_dict(theirs.state_dict())
    x, h = _x(rng, 5, 3), _x(rng, 2, 4)
    out, hn = ours(jnp.asarray(x), jnp.asarray(h))
    t_out, t_hn = theirs(torch.from_numpy(x), torch.from_numpy(h))
    assert_close(out, t_out, rtol=1e-5, atol=1e-5)
    assert_close(hn, t_hn, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"GRU\(3, 4, num_layers=2\): expected hidden state of "
                       r"shape \(2, 4\), got \(1, 4\)"):
        ours(jnp.asarray(x), jnp.zeros((1, 4)))


def test_embedding_matches_torch(rng):
    ours, theirs = nn.Embedding(7, 3, padding_idx=1), torch.nn.Embedding(7, 3, padding_idx=1)
    ours.load_state_dict(theirs.state_dict())
    idx = np.array([[0, 1, 6], [1, 2, 2]])
    grads = jax.grad(lambda p: (func.functional_call(ours, p, jnp.asarray(idx)) ** 2).sum())(
        {"weight": ours.weight.data})
    (theirs(torch.from_numpy(idx)) ** 2).sum().backward()
    assert_close(grads["weight"], theirs.weight.grad)
    frozen = nn.Embedding.from_pretrained(jnp.eye(3))
    assert not frozen.weight.requires_grad and frozen(jnp.array([2]))[0, 2] == 1
    assert float(jnp.abs(nn.Embedding(5, 2, padding_idx=0).weight.data[0]).sum()) == 0


def test_loss_modules_match_torch(rng):
    logits, target = _x(rng, 4, 5), rng.integers(0, 5, 4)
    weight = np.abs(_x(rng, 5)) + 0.1
    cases = [
        ("CrossEntropyLoss", {"weight": weight, "label_smoothing": 0.1}, (logits, target)),
        ("NLLLoss", {"reduction": "sum"}, (logits, target)),
        ("MSELoss", {}, (logits, logits[::-1].copy())),
        ("BCEWithLogitsLoss", {"pos_weight": weight}, (logits, (logits > 0).astype(np.float32))),
        ("SmoothL1Loss", {"beta": 0.5}, (logits, logits * 0)),
        ("KLDivLoss", {"reduction": "batchmean"}, (logits, np.abs(logits))),
    ]
    for name, kwargs, inputs in cases:
        t_kwargs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                    for k, v in kwargs.items()}
        ours, theirs = getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**t_kwargs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert_close(ours(*map(jnp.asarray, inputs)), theirs(*map(torch.from_numpy, inputs)),
                     rtol=1e-5, atol=1e-5, err_msg=name)


def test_multihead_attention_matches_torch(rng):
    for kwargs in [{"batch_first": True}, {"kdim": 3, "vdim": 5, "add_bias_kv": True}]:
        torch.manual_seed(0)
        ours, theirs = nn.MultiheadAttention(8, 2, **kwargs), torch.nn.MultiheadAttention(
            8, 2, **kwargs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        ours.load_state_dict(theirs.state_dict())
        q = _x(rng, 2, 4, 8)
        k = _x(rng, 2, 6, kwargs.get("kdim", 8))
        v = _x(rng, 2, 6, kwargs.get("vdim", 8))
        if not kwargs.get("batch_first"):
            q, k, v = (np.ascontiguousarray(t.swapaxes(0, 1)) for t in (q, k, v))
        mask = np.triu(np.ones((4, 6), bool), 1)  # torch pads it for add_bias_kv itself
        out, w = ours(*map(jnp.asarray, (q, k, v)), attn_mask=jnp.asarray(mask))
        t_out, t_w = theirs(*map(torch.from_numpy, (q, k, v)), attn_mask=torch.from_numpy(mask))
        assert_close(out, t_out, rtol=1e-5, atol=1e-5)
        assert_close(w, t_w, rtol=1e-5, atol=1e-5)


def test_padding_pixelshuffle_upsample_match_torch(rng):
    x = _x(rng, 1, 8, 3, 4)
    for name, args in [("ZeroPad2d", ((1, 2, 0, 1),)), ("ReflectionPad2d", (1,)),
                       ("ReplicationPad2d", ((2, 1, 0, 1),)), ("ConstantPad2d", (1, 0.5)),
                       ("CircularPad2d", (1,)), ("PixelShuffle", (2,)),
                       ("PixelUnshuffle", (1,)), ("Upsample", (None, 2, "nearest"))]:
        ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        assert_close(ours(jnp.asarray(x)), theirs(torch.from_numpy(x)), err_msg=name)


def test_dropout_modules_train_and_eval():
    torsh_fn.manual_seed(0)  # the channel dropouts drop 400 (2d) or 12800 (1d) units: the
    x = jnp.ones((400, 32, 3))  # mean of the kept ones is within 0.1 of 1 at 3.4 sigma
    for name in ("Dropout", "Dropout1d", "Dropout2d"):
        layer = getattr(nn, name)(0.25)
        y = to_numpy(layer(x))
        assert not np.allclose(y, 1.0) and abs(y.mean() - 1.0) < 0.1, name
        assert_close(layer.eval()(x), x)
    # AlphaDropout keeps zero mean and unit variance of standardised inputs, as torch's does.
    z = jax.random.normal(jax.random.PRNGKey(0), (200, 8, 3))
    layer = nn.AlphaDropout(0.25)
    y = to_numpy(layer(z))
    assert not np.allclose(y, z) and abs(y.mean()) < 0.1 and abs(y.std() - 1.0) < 0.1
    assert_close(layer.eval()(z), z)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)
