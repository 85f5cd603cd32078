"""``python -m torsh_fn`` runs the ``torsh-fn`` command (see :mod:`torsh_fn.cli`)."""

import sys

from .cli import main

sys.exit(main())
