"""``torsh_fn.utils`` mirrors ``torch.utils`` where ported code imports from it."""

from . import data as data
