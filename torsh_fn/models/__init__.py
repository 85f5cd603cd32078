"""The model zoo, with PyTorch/torchvision key names so their checkpoints load unchanged.

``get(name, **kw)`` builds a model by name (``list_models()`` lists them);
``get("seed_cnn", pretrained=True)`` and ``get("lenet5", pretrained=True)`` load weights trained
on the 8x8 digits that ship inside the package (``scripts/train_shipped_weights.py`` makes them).

Example:
    >>> from torsh_fn import models
    >>> net = models.get("resnet18", num_classes=10)
    >>> net.load_state_dict(torsh_fn.load("resnet18.pth"))   # a torchvision state_dict
"""

from ._registry import get as get
from ._registry import list_models as list_models
from ._registry import pretrained_path as pretrained_path
from .gpt import GPT as GPT
from .gpt import GPTConfig as GPTConfig
from .gpt import gpt as gpt
from .lenet import LeNet5 as LeNet5
from .lenet import SeedCNN as SeedCNN
from .lenet import lenet5 as lenet5
from .lenet import seed_cnn as seed_cnn
from .mlp import MLP as MLP
from .mlp import mlp as mlp
from .resnet import ResNet as ResNet
from .resnet import resnet18 as resnet18
from .resnet import resnet34 as resnet34
from .resnet import resnet50 as resnet50
from .vgg import VGG as VGG
from .vgg import vgg11 as vgg11
from .vit import VisionTransformer as VisionTransformer
from .vit import vit_tiny as vit_tiny
