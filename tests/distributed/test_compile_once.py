"""A DDP or FSDP training step compiles once on 8 simulated devices: the state not yet placed
anywhere (the generator's key, AdamW's step counters) goes onto the mesh before the first call,
so the second call finds the first call's program."""

from __future__ import annotations

import json
import subprocess
import sys

from ._subprocess import ROOT, device_env

SCRIPT = r"""
import json
import numpy as np
import torsh_fn
import torsh_fn.nn.functional as F
from torsh_fn import distributed as dist, models, optim

out = {}
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
y = rng.integers(0, 10, 16)
for wrap in ("DDP", "FSDP"):
    torsh_fn.manual_seed(0)
    model = getattr(dist, wrap)(models.get("seed_cnn"))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    traces = []

    @torsh_fn.jit
    def step(model, opt, x, y):
        traces.append(None)
        opt.zero_grad()
        loss = torsh_fn.backward(lambda: F.cross_entropy(model(x), y))
        opt.step()
        return loss

    batch = dist.shard_batch((x, y))
    losses = [float(step(model, opt, *batch)) for _ in range(3)]
    out[wrap] = {"traces": len(traces), "programs": len(step._cache), "losses": losses}
print(json.dumps(out))
"""


def test_ddp_and_fsdp_steps_compile_once():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=device_env(8), cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for wrap, r in results.items():
        assert r["traces"] == 1 and r["programs"] == 1, (wrap, r)
        assert r["losses"][2] < r["losses"][0], (wrap, r)  # it trains
