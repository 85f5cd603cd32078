"""``torsh_fn.data`` mirrors ``torch.utils.data``: datasets, samplers, the parallel DataLoader.

Batches are numpy arrays (``default_collate`` stacks samples); :func:`prefetch_to_device` puts the
next batches on the device (or a ``jax.sharding`` layout) while the current step runs. Datasets
that need no network (:func:`digits`, :class:`MNIST`, :class:`CIFAR10`, :class:`ImageFolder`,
:class:`FakeData`) and numpy transforms (:mod:`torsh_fn.data.transforms`) come with it.

Example:
    >>> from torsh_fn.data import DataLoader, TensorDataset
    >>> loader = DataLoader(TensorDataset(np.zeros((10, 3))), batch_size=4, num_workers=2)
    >>> [x.shape for (x,) in loader]
    [(4, 3), (4, 3), (2, 3)]
"""

from . import transforms as transforms
from ._collate import default_collate as default_collate
from ._collate import default_convert as default_convert
from ._dataloader import DataLoader as DataLoader
from ._dataset import ChainDataset as ChainDataset
from ._dataset import ConcatDataset as ConcatDataset
from ._dataset import Dataset as Dataset
from ._dataset import IterableDataset as IterableDataset
from ._dataset import Subset as Subset
from ._dataset import TensorDataset as TensorDataset
from ._dataset import random_split as random_split
from ._datasets import CIFAR10 as CIFAR10
from ._datasets import MNIST as MNIST
from ._datasets import FakeData as FakeData
from ._datasets import FashionMNIST as FashionMNIST
from ._datasets import ImageFolder as ImageFolder
from ._datasets import digits as digits
from ._prefetch import prefetch_to_device as prefetch_to_device
from ._sampler import BatchSampler as BatchSampler
from ._sampler import DistributedSampler as DistributedSampler
from ._sampler import RandomSampler as RandomSampler
from ._sampler import Sampler as Sampler
from ._sampler import SequentialSampler as SequentialSampler
from ._sampler import SubsetRandomSampler as SubsetRandomSampler
from ._sampler import WeightedRandomSampler as WeightedRandomSampler
from ._worker import WorkerInfo as WorkerInfo
from ._worker import get_worker_info as get_worker_info

__all__ = [
    "BatchSampler", "CIFAR10", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset",
    "DistributedSampler", "FakeData", "FashionMNIST", "ImageFolder", "IterableDataset", "MNIST",
    "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler",
    "TensorDataset", "WeightedRandomSampler", "WorkerInfo", "default_collate", "default_convert",
    "digits", "get_worker_info", "prefetch_to_device", "random_split", "transforms",
]
