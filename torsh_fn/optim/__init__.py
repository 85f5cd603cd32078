"""``torsh_fn.optim``: PyTorch's optimizers and learning-rate schedulers, built on optax.

Two faces over one rule per optimizer:

* classes with PyTorch's names and signatures (``SGD``, ``Adam``, ...) that update
  ``torsh_fn.nn.Parameter`` objects in place and work inside ``torsh_fn.jit``;
* lower-case functions (``sgd``, ``adam``, ...) returning ``optax.GradientTransformation``s with
  the same update rule, for the functional face.
"""

from . import lr_scheduler as lr_scheduler
from . import schedules as schedules
from ._adam import (
    Adam as Adam, AdamW as AdamW, Adamax as Adamax, NAdam as NAdam, RAdam as RAdam, adam as adam,
    adamax as adamax, adamw as adamw, nadam as nadam, radam as radam,
)
from ._lbfgs import LBFGS as LBFGS
from ._rmsprop import (
    Adadelta as Adadelta, Adagrad as Adagrad, RMSprop as RMSprop, adadelta as adadelta,
    adagrad as adagrad, rmsprop as rmsprop,
)
from ._rprop import Rprop as Rprop, rprop as rprop
from ._rule import TorchRuleState as TorchRuleState, from_rule as from_rule
from ._sgd import ASGD as ASGD, SGD as SGD, asgd as asgd, sgd as sgd
from .grad_scaler import GradScaler as GradScaler
from .optimizer import Optimizer as Optimizer
