"""Train the weights shipped in ``torsh_fn/models/weights/`` from a seed, bit for bit.

    python scripts/train_shipped_weights.py            # rewrite the shipped files
    python scripts/train_shipped_weights.py --check    # retrain and compare with them

Each model is trained by ``torsh-fn train`` on the training split of the 8x8 digits (seed 0;
the validation split stays held out, see ``torsh_fn.cli.load_dataset``), and its final
``model.safetensors`` becomes ``<model>_digits.safetensors``. The same jax version on the same
kind of CPU reproduces the files byte for byte (XLA's CPU kernels are deterministic).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from torsh_fn import models
from torsh_fn.cli import main as torsh_fn_main

RECIPES = {"seed_cnn": ["--epochs", "15"], "lenet5": ["--epochs", "15"]}


def train(name: str, out: Path) -> Path:
    """Train ``name`` with its recipe into ``out``; the path of the final weights."""
    torsh_fn_main(["train", "--model", name, "--dataset", "digits", "--seed", "0",
                   "--out", str(out), "--no-progress", *RECIPES[name]])
    return out / "model.safetensors"


def run(check: bool) -> int:
    differ = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in RECIPES:
            weights = train(name, Path(tmp) / name)
            shipped = models.pretrained_path(name)
            if check:
                same = shipped.is_file() and filecmp.cmp(weights, shipped, shallow=False)
                print(f"{name}: {'identical to' if same else 'DIFFERS from'} {shipped}")
                differ += [] if same else [name]
            else:
                shipped.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(weights, shipped)
                print(f"{name}: wrote {shipped}")
    return 1 if differ else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    sys.exit(run(parser.parse_args().check))
