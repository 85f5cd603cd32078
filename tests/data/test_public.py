"""The public face: names, the torch.utils.data alias, and the import rule of the layers."""

from __future__ import annotations

import subprocess
import sys

import torch.utils.data

import torsh_fn.data
import torsh_fn.utils.data


def test_utils_data_is_the_same_package_under_torchs_name():
    from torsh_fn.utils.data import DataLoader

    assert DataLoader is torsh_fn.data.DataLoader
    assert set(torsh_fn.data.__all__) <= set(dir(torsh_fn.utils.data))


def test_torch_utils_data_names_are_all_here():
    names = ["Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "ChainDataset",
             "Subset", "random_split", "default_collate", "default_convert", "Sampler",
             "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
             "BatchSampler", "DistributedSampler", "DataLoader", "get_worker_info"]
    for name in names:
        assert hasattr(torch.utils.data, name) and hasattr(torsh_fn.utils.data, name), name


def test_data_imports_neither_nn_nor_optim():
    code = ("import sys, torsh_fn.data; "
            "print([m for m in sys.modules if m.startswith(('torsh_fn.nn', 'torsh_fn.optim'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
