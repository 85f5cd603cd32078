"""Write the notebooks in this folder from the cells below, outputs stripped.

The notebooks are generated so that their source stays reviewable as Python and git never holds
outputs; ``tests/test_notebooks.py`` executes each one and checks that the committed files are what
this script writes. After editing a cell here:

    python notebooks/make_notebooks.py           # rewrite the .ipynb files
    python notebooks/make_notebooks.py --check   # exit 1 if a committed notebook differs

Cells whose source starts with ``# plot`` draw a figure; the test requires an image from each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

QUICKSTART = [
    ("md", """# torsh_fn quickstart: arrays, grad, vmap, jit

torsh_fn's arrays are plain `jax.Array`s. The top level `torsh_fn` creates them with PyTorch's
signatures, names a set of array functions as PyTorch does, and re-exports JAX's transforms.
Everything else comes from `jax.numpy` on the same arrays."""),
    ("code", """import time

import jax
import jax.numpy as jnp
import numpy as np

import torsh_fn as T

print(f"torsh_fn {T.__version__}, jax {jax.__version__}, backend {jax.default_backend()}")"""),
    ("md", """## Creating arrays

Sizes as `zeros(2, 3)` or `zeros((2, 3))`; Python floats take the default dtype and integers
become int64 (stored in 32 bits unless `jax_enable_x64` is on, as everywhere in JAX)."""),
    ("code", """T.manual_seed(0)  # the global generator, as torch.manual_seed
x = T.randn(4, 3)
print(type(x).__name__, x.shape, x.dtype)
print(T.zeros(2, 3))
print(T.arange(0, 10, 2), T.linspace(0, 1, 5))
print(T.eye(3, dtype=T.bfloat16))
print(T.tensor([[1, 2], [3, 4]]).dtype, T.full((2,), 7.0).dtype)"""),
    ("md", """## PyTorch-named functions

`dim` and `keepdim` as in PyTorch; `max` with a `dim` returns a named tuple."""),
    ("code", """values, indices = T.max(x, dim=1)
print(values, indices)
print(T.sum(x, dim=0, keepdim=True).shape, T.transpose(x, 0, 1).shape, T.cat([x, x]).shape)
print(T.std(x), jnp.exp(x).mean())  # Bessel-corrected std; anything else from jax.numpy"""),
    ("md", """## Random numbers: the global generator or an explicit key

Every random function takes `key=` (a JAX key: no global state is read or changed) or
`generator=`; without either it draws from the global generator that `manual_seed` sets."""),
    ("code", """a = T.randn(3, key=jax.random.PRNGKey(1))
b = T.randn(3, key=jax.random.PRNGKey(1))
assert bool((a == b).all())
T.manual_seed(42)
c = T.randn(3)
T.manual_seed(42)
assert bool((c == T.randn(3)).all())
print(a, c)"""),
    ("md", """## Gradients

`grad` is JAX's: it transforms a function into the function that computes its gradient with
respect to the first argument. Nothing is recorded unless a transform asks for it, so there is
no `requires_grad` and no `no_grad()` to remember."""),
    ("code", """def loss(w, x, y):
    return T.mean((jnp.tanh(x @ w) - y) ** 2)


w, y = T.randn(3, 2), T.randn(4, 2)
g = T.grad(loss)(w, x, y)  # d loss / d w, the shape of w

eps = 1e-2  # a central difference agrees with one entry
e = jnp.zeros_like(w).at[0, 1].set(eps)
fd = (loss(w + e, x, y) - loss(w - e, x, y)) / (2 * eps)
print(g[0, 1], fd)
assert abs(float(g[0, 1]) - float(fd)) < 1e-3

value, grads = T.value_and_grad(loss)(w, x, y)      # JAX's order: (value, grad)
grads2, value2 = T.func.grad_and_value(loss)(w, x, y)  # torch.func's name and order
assert jnp.allclose(grads, grads2) and jnp.allclose(value, value2)"""),
    ("md", """## vmap: batch any function

`vmap` maps a function over a leading axis without a Python loop. Per-example gradients, which
need a special library in PyTorch, are `vmap(grad(loss))`:"""),
    ("code", """per_example = T.vmap(T.grad(loss), in_axes=(None, 0, 0))(w, x[:, None], y[:, None])
print(per_example.shape)  # one gradient per example
assert jnp.allclose(per_example.mean(0), g, atol=1e-6)  # their mean is the batch gradient"""),
    ("md", """## jit: compile a function into one XLA program

The first call traces and compiles; later calls with the same shapes and dtypes run the compiled
program. JAX runs asynchronously, so a timing waits with `block_until_ready()`."""),
    ("code", """def mlp(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


sizes = [(256, 512), (512, 512), (512, 10)]
keys = jax.random.split(jax.random.PRNGKey(0), len(sizes))
params = [(T.randn(m, n, key=k) / m**0.5, T.zeros(n)) for k, (m, n) in zip(keys, sizes)]
batch = T.randn(512, 256)
fast = T.jit(mlp)


def median_ms(f, repeats=10):
    f().block_until_ready()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f().block_until_ready()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


print(f"op by op: {median_ms(lambda: mlp(params, batch)):.2f} ms, "
      f"jit: {median_ms(lambda: fast(params, batch)):.2f} ms")
assert jnp.allclose(fast(params, batch), mlp(params, batch), atol=1e-4)"""),
]

FUNCTIONAL = [
    ("md", """# A functional training loop

The JAX way: the model is a pure function of a parameter pytree, the loss's gradient comes from
`jax.value_and_grad`, the optimizer is optax, and one `jax.jit` compiles the whole step. The
data are the 8x8 handwritten digits that ship with scikit-learn."""),
    ("code", """%matplotlib inline
import math
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import torsh_fn as T
from torsh_fn.data import digits

ds = digits()
x_all = ds.data.reshape(len(ds.data), -1)  # (1797, 64) in [0, 1]
y_all = np.asarray(ds.targets)
order = np.random.default_rng(0).permutation(len(x_all))
cut = int(0.8 * len(order))
x_train, y_train = x_all[order[:cut]], y_all[order[:cut]]
x_val, y_val = x_all[order[cut:]], y_all[order[cut:]]
print(x_train.shape, x_val.shape)"""),
    ("md", """## Parameters are a pytree; the model is a function

Initialised as PyTorch's `nn.Linear` is: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""),
    ("code", """def linear_init(key, fan_in, fan_out):
    kw, kb = jax.random.split(key)
    bound = 1 / math.sqrt(fan_in)
    return {"weight": jax.random.uniform(kw, (fan_out, fan_in), minval=-bound, maxval=bound),
            "bias": jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)}


def init(key):
    k1, k2 = jax.random.split(key)
    return {"hidden": linear_init(k1, 64, 128), "out": linear_init(k2, 128, 10)}


def model(params, x):
    h = jax.nn.relu(x @ params["hidden"]["weight"].T + params["hidden"]["bias"])
    return h @ params["out"]["weight"].T + params["out"]["bias"]


def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(params, x), y).mean()


params = init(jax.random.PRNGKey(0))
print(jax.tree.map(jnp.shape, params))"""),
    ("md", """## One jitted step: gradient and optimizer update"""),
    ("code", """optimizer = optax.adam(1e-2)
opt_state = optimizer.init(params)


@jax.jit
def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@jax.jit
def accuracy(params, x, y):
    return (T.argmax(model(params, x), 1) == y).mean()


rng = np.random.default_rng(0)
losses, accuracies = [], []
for _ in range(15):
    perm = rng.permutation(len(x_train))
    for i in range(0, len(perm) - 63, 64):
        idx = perm[i:i + 64]
        params, opt_state, loss = step(params, opt_state, x_train[idx], y_train[idx])
        losses.append(float(loss))
    accuracies.append(float(accuracy(params, x_val, y_val)))
print(f"validation accuracy after {len(accuracies)} epochs: {accuracies[-1]:.2%}")
assert accuracies[-1] > 0.95"""),
    ("code", """# plot: the training curves
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(losses)
left.set(xlabel="step", ylabel="training loss", yscale="log")
right.plot(range(1, len(accuracies) + 1), accuracies, marker="o")
right.set(xlabel="epoch", ylabel="validation accuracy")
fig.tight_layout()
plt.show()"""),
    ("md", """## Everything is a function

Per-example gradients and whole ensembles are `vmap`s of what is already written, and a
parameter pytree saves as it is (safetensors, no pickle)."""),
    ("code", """per_example = jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))(
    params, x_val[:8, None], y_val[:8, None])
print(jax.tree.map(jnp.shape, per_example))  # a leading axis of 8 on every leaf

ensemble = jax.vmap(init)(jax.random.split(jax.random.PRNGKey(1), 4))  # 4 stacked networks
logits = jax.vmap(model, in_axes=(0, None))(ensemble, x_val)
print(logits.shape)  # (networks, examples, classes)

path = os.path.join(tempfile.mkdtemp(), "params.safetensors")
T.save(params, path)
restored = T.load(path)
assert jax.tree.structure(restored) == jax.tree.structure(params)
assert float(accuracy(restored, x_val, y_val)) == accuracies[-1]"""),
]

PYTORCH_STYLE = [
    ("md", """# PyTorch-style training

`torsh_fn.nn`, `torsh_fn.optim` and `torsh_fn.data` keep PyTorch's names, defaults and
`state_dict` keys. A training step is compiled into one XLA program by `torsh_fn.jit`, which
takes the model and optimizer as arguments and writes their new state back. A PyTorch
`state_dict` loads unchanged."""),
    ("code", """import os
import tempfile

import jax.numpy as jnp
import numpy as np

import torsh_fn
from torsh_fn import nn, optim
from torsh_fn.data import DataLoader, TensorDataset, digits
from torsh_fn.nn import functional as F

ds = digits()
images = ds.data[:, None]  # (N, 1, 8, 8), as a PyTorch image batch
labels = np.asarray(ds.targets)
order = np.random.default_rng(0).permutation(len(images))
cut = int(0.8 * len(order))
train_x, train_y = images[order[:cut]], labels[order[:cut]]
val_x, val_y = images[order[cut:]], labels[order[cut:]]
loader = DataLoader(TensorDataset(train_x, train_y), batch_size=64, shuffle=True,
                    drop_last=True, generator=torsh_fn.Generator().manual_seed(0))
print(len(loader), "batches an epoch")"""),
    ("md", """## A module, as in PyTorch"""),
    ("code", """class Net(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(16 * 2 * 2, classes))

    def forward(self, x):
        return self.head(self.features(x))


torsh_fn.manual_seed(0)
model = Net()
print(model)
print({k: tuple(v.shape) for k, v in model.state_dict().items()})"""),
    ("md", """## Optimizer, scheduler and a compiled step

`torsh_fn.backward(closure)` stands where PyTorch has `loss.backward()`: it evaluates the loss and
adds the gradients into each parameter's `.grad`. The scheduler steps outside the compiled step:
the learning rate goes in as a number, so changing it does not recompile."""),
    ("code", """optimizer = optim.Adam(model.parameters(), lr=2e-2)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.3)


@torsh_fn.jit
def train_step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
    optimizer.step()
    return loss


@torsh_fn.jit
def accuracy(model, x, y):
    return (model(x).argmax(-1) == y).mean()


for epoch in range(1, 7):
    model.train()
    losses = [float(train_step(model, optimizer, x, y)) for x, y in loader]
    scheduler.step()
    model.eval()
    acc = float(accuracy(model, val_x, val_y))
    print(f"epoch {epoch}: loss {np.mean(losses):.3f}, validation accuracy {acc:.2%}, "
          f"lr {scheduler.get_last_lr()[0]:.4f}")
assert acc > 0.85"""),
    ("md", """## Saving and loading

`torsh_fn.save` writes a `state_dict` (or any nested dict of arrays) as safetensors: no pickle."""),
    ("code", """folder = tempfile.mkdtemp()
torsh_fn.save(model.state_dict(), os.path.join(folder, "net.safetensors"))
restored = Net()
restored.load_state_dict(torsh_fn.load(os.path.join(folder, "net.safetensors")))
restored.eval()
np.testing.assert_array_equal(restored(val_x[:8]), model(val_x[:8]))

bad = dict(model.state_dict())
bad["head.2.weight"] = bad["head.2.weight"][:, :8]
try:
    restored.load_state_dict(bad)
except ValueError as err:
    print(err)"""),
    ("md", """## Loading PyTorch weights

The same network written in PyTorch has the same keys and shapes, so its `state_dict` (torch
tensors as they are, or a `.pt` file read with `torch.load(weights_only=True)`) loads into the
torsh_fn model, which then computes what PyTorch computes. These cells need PyTorch."""),
    ("code", """try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping the cells that load its weights")"""),
    ("code", """if torch is not None:

    class TorchNet(torch.nn.Module):  # the class above, with torch's nn
        def __init__(self, classes=10):
            super().__init__()
            self.features = torch.nn.Sequential(
                torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                torch.nn.MaxPool2d(2), torch.nn.AdaptiveAvgPool2d(2))
            self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.1),
                                            torch.nn.Linear(16 * 2 * 2, classes))

        def forward(self, x):
            return self.head(self.features(x))

    torch.manual_seed(0)
    torch_model = TorchNet()
    torch_model(torch.randn(32, 1, 8, 8))  # one training-mode batch: BatchNorm statistics move
    torch_model.eval()

    ported = Net()
    ported.load_state_dict(torch_model.state_dict())  # torch tensors, as they are
    ported.eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(val_x)).numpy()
    np.testing.assert_allclose(ported(jnp.asarray(val_x)), expected, rtol=1e-4, atol=1e-5)

    torch.save(torch_model.state_dict(), os.path.join(folder, "net.pt"))
    ported.load_state_dict(torsh_fn.load(os.path.join(folder, "net.pt")))
    np.testing.assert_allclose(ported(jnp.asarray(val_x)), expected, rtol=1e-4, atol=1e-5)
    print(f"torsh_fn computes what PyTorch computes on {len(val_x)} images")"""),
]

KERNELS = [
    ("md", """# Kernels and dispatch

`torsh_fn.kernels` holds the hand-written Pallas kernels, each beside its `jax.numpy` reference.
Every op takes `impl="xla"` (the reference, compiled by XLA), `impl="pallas"` (the kernel; on a
CPU it runs in Pallas' interpreter, which is for testing, not speed) or `impl="auto"` (the
default), which uses the kernel only on a GPU and only where a benchmark measured it faster."""),
    ("code", """%matplotlib inline
import json
import time
from importlib import resources

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from torsh_fn import kernels

print(f"backend {jax.default_backend()}, default impl {kernels.get_default_impl()!r}")"""),
    ("md", """## The public ops, three ways

Each row runs one op with each `impl` on the same input; the Pallas kernel and the reference
agree to float32 rounding, and on this backend `auto` runs exactly what it picks."""),
    ("code", """rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((64, 256)), jnp.float32)
labels = jnp.asarray(rng.integers(0, 256, 64))
weight, bias = jnp.asarray(rng.standard_normal(256), jnp.float32), jnp.zeros(256)
ops = {
    "softmax": lambda impl: kernels.softmax(x, -1, impl=impl),
    "log_softmax": lambda impl: kernels.log_softmax(x, -1, impl=impl),
    "layer_norm": lambda impl: kernels.layer_norm(x, 1, weight, bias, impl=impl),
    "rms_norm": lambda impl: kernels.rms_norm(x, 1, weight, impl=impl),
    "cross_entropy": lambda impl: kernels.cross_entropy(x, labels, impl=impl),
    "bias_act (gelu)": lambda impl: kernels.bias_act(x, bias, "gelu", impl=impl),
    "reductions.sum": lambda impl: kernels.reductions.sum(x, dim=-1, impl=impl),
}
print(f"{'op':<16}{'out shape':>12}{'|pallas - xla|':>16}{'auto == xla':>13}")
for name, op in ops.items():
    ref, pallas, auto = op("xla"), op("pallas"), op("auto")
    err = float(jnp.abs(pallas - ref).max())
    same = bool((auto == ref).all())
    print(f"{name:<16}{ref.shape!s:>12}{err:>16.1e}{same!s:>13}")
    assert err < 1e-4
    if jax.default_backend() != "gpu":
        assert same  # off a GPU, auto never picks Pallas"""),
    ("md", """Gradients go through each kernel's `custom_vjp` and agree with autodiff of the
reference:"""),
    ("code", """def grad_of(op_name, impl):
    op = {"softmax": kernels.softmax, "log_softmax": kernels.log_softmax}[op_name]
    return jax.grad(lambda v: jnp.sum(op(v, -1, impl=impl) * jnp.cos(v)))(x)


for name in ("softmax", "log_softmax"):
    err = float(jnp.abs(grad_of(name, "pallas") - grad_of(name, "xla")).max())
    print(f"{name}: max |grad pallas - grad xla| = {err:.1e}")
    assert err < 1e-4


def cross_entropy_grad(impl):
    return jax.grad(lambda v: kernels.cross_entropy(v, labels, impl=impl).mean())(x)


err = float(jnp.abs(cross_entropy_grad("pallas") - cross_entropy_grad("xla")).max())
print(f"cross_entropy: max |grad pallas - grad xla| = {err:.1e}")
assert err < 1e-4"""),
    ("md", """## The measured dispatch table

`impl="auto"` reads `torsh_fn/kernels/dispatch_table.json`, written by
`benchmarks/kernels.py --sweep` on a GPU: one table per GPU model, and in each, for each op and
dtype, entries `[size, pallas_ms, xla_ms]` (the size is the row length, the number of classes or
the pooled plane). A call uses Pallas where the entry nearest its size, measured on the same GPU
model, shows Pallas faster by more than the margin; on a GPU model never measured it uses XLA."""),
    ("code", """path = resources.files("torsh_fn.kernels").joinpath("dispatch_table.json")
tables = json.loads(path.read_text())
margin = tables["margin"]
for device, table in tables["devices"].items():
    print(f"measured on {device}, jax {table['jax']}, {table['date']}, margin {margin:.0%}\\n")
    print(f"{'op':<16}{'dtype':<10}{'size':>8}{'pallas ms':>11}{'xla ms':>9}{'speed-up':>10}"
          "  auto picks (on this GPU)")
    for op, by_dtype in table["ops"].items():
        for dtype, entries in by_dtype.items():
            for size, pallas_ms, xla_ms in entries:
                pick = "pallas" if pallas_ms * (1 + margin) < xla_ms else "xla"
                print(f"{op:<16}{dtype:<10}{size:>8}{pallas_ms:>11.4f}{xla_ms:>9.4f}"
                      f"{xla_ms / pallas_ms:>9.2f}x  {pick}")
    print()"""),
    ("code", """# plot: Pallas' speed-up over XLA in the dispatch table
devices = tables["devices"]
dtypes = sorted({d for t in devices.values() for by_dtype in t["ops"].values() for d in by_dtype})
fig, axes = plt.subplots(len(devices), len(dtypes), figsize=(11, 3.8 * len(devices)),
                         sharey=True, squeeze=False)
for row, (device, table) in zip(axes, devices.items()):
    for ax, dtype in zip(row, dtypes):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        for op, by_dtype in table["ops"].items():
            entries = np.asarray(by_dtype.get(dtype, []), dtype=float).reshape(-1, 3)
            if len(entries):
                ax.plot(entries[:, 0], entries[:, 2] / entries[:, 1], marker="o", label=op)
        ax.axhline(1 + margin, color="k", ls="--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="size key", title=f"{dtype} on {device}")
    row[0].set_ylabel("xla ms / pallas ms (above the line: pallas)")
axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
fig.tight_layout()
plt.show()"""),
    ("md", """## Memory bandwidth on this machine

The ops above are memory-bound: their speed is the bytes they read and write per second. A small
measurement with the XLA implementations (the median of a few calls after a warm-up, waiting with
`block_until_ready`) shows how that rate grows with the size until the work outweighs the cost
of a call. On an H100 the same element-wise work reaches about 3 TB/s."""),
    ("code", """# plot: measured bandwidth of element-wise and row-wise ops (XLA) by size
def median_seconds(fn, arg, repeats=7):
    fn(arg).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg).block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


work = {
    "x + 1": jax.jit(lambda v: v + 1),
    "softmax": jax.jit(lambda v: kernels.softmax(v, -1, impl="xla")),
    "layer_norm": jax.jit(lambda v: kernels.layer_norm(v, 1, impl="xla")),
}
sizes = [1 << k for k in range(12, 23, 2)]  # float32 elements, rows of 1024
bandwidth = {name: [] for name in work}
for n in sizes:
    v = jnp.asarray(rng.standard_normal((n // 1024, 1024)), jnp.float32)
    for name, fn in work.items():
        bandwidth[name].append(2 * v.nbytes / median_seconds(fn, v) / 1e9)  # read + write

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, gbs in bandwidth.items():
    ax.plot(np.asarray(sizes) * 4, gbs, marker="o", label=name)
ax.set(xscale="log", xlabel="input bytes", ylabel="GB/s (read + write)",
       title=f"XLA on {jax.devices()[0].device_kind}")
ax.legend()
fig.tight_layout()
plt.show()
print({name: f"{max(gbs):.1f} GB/s" for name, gbs in bandwidth.items()})"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_functional_training.ipynb": FUNCTIONAL,
    "03_pytorch_style.ipynb": PYTORCH_STYLE,
    "04_kernels_and_dispatch.ipynb": KERNELS,
}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook of these cells: outputs empty, execution counts None, ids by position."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                  "language": "python"},
                   "language_info": {"name": "python"}}
    for i, (kind, source) in enumerate(cells):
        new = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = new(source)
        cell.id = f"cell-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(cells: list[tuple[str, str]]) -> str:
    return nbformat.writes(build(cells)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook differs from its cells here")
    args = parser.parse_args(argv)
    stale = []
    for name, cells in NOTEBOOKS.items():
        path, text = HERE / name, render(cells)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run python notebooks/make_notebooks.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
