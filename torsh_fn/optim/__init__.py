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
    Adam as Adam,
)
from ._adam import (
    Adamax as Adamax,
)
from ._adam import (
    AdamW as AdamW,
)
from ._adam import (
    NAdam as NAdam,
)
from ._adam import (
    RAdam as RAdam,
)
from ._adam import (
    adam as adam,
)
from ._adam import (
    adamax as adamax,
)
from ._adam import (
    adamw as adamw,
)
from ._adam import (
    nadam as nadam,
)
from ._adam import (
    radam as radam,
)
from ._lbfgs import LBFGS as LBFGS
from ._rmsprop import (
    Adadelta as Adadelta,
)
from ._rmsprop import (
    Adagrad as Adagrad,
)
from ._rmsprop import (
    RMSprop as RMSprop,
)
from ._rmsprop import (
    adadelta as adadelta,
)
from ._rmsprop import (
    adagrad as adagrad,
)
from ._rmsprop import (
    rmsprop as rmsprop,
)
from ._rprop import Rprop as Rprop
from ._rprop import rprop as rprop
from ._rule import TorchRuleState as TorchRuleState
from ._rule import from_rule as from_rule
from ._sgd import ASGD as ASGD
from ._sgd import SGD as SGD
from ._sgd import asgd as asgd
from ._sgd import sgd as sgd
from .grad_scaler import GradScaler as GradScaler
from .optimizer import Optimizer as Optimizer
