"""The public surface of ``torsh_fn.distributed``: every name in ``__all__`` is there, is the
object its private module defines, and says what it does; the PyTorch aliases are the classes."""

from __future__ import annotations

import inspect

import torsh_fn
from torsh_fn import distributed as dist


def test_every_public_name_exists_and_is_documented():
    assert sorted(dist.__all__) == sorted(set(dist.__all__))
    for name in dist.__all__:
        obj = getattr(dist, name)
        assert obj.__module__.startswith("torsh_fn.distributed._"), name
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_pytorch_aliases_and_top_level_access():
    assert dist.DDP is dist.DistributedDataParallel
    assert dist.FSDP is dist.FullyShardedDataParallel
    assert torsh_fn.distributed is dist
    assert {"init_process_group", "get_rank", "get_world_size", "barrier", "is_initialized",
            "all_reduce", "all_gather", "broadcast"} <= set(dist.__all__)


def test_one_process_without_a_group():
    assert not dist.is_initialized()
    assert dist.get_rank() == 0 and dist.get_world_size() == 1
