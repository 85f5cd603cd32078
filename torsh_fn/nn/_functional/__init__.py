"""Family modules of ``torsh_fn.nn.functional``; import from ``torsh_fn.nn.functional``."""
