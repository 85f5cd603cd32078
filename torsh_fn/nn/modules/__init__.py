"""The layer library, one family a file; ``torsh_fn.nn`` re-exports every class here."""

from . import activation as _activation
from . import container as _container
from . import loss as _loss
from .activation import *  # noqa: F403
from .container import *  # noqa: F403
from .loss import *  # noqa: F403

__all__ = [name for family in (_activation, _container, _loss) for name in family.__all__]
