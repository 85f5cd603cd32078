"""``torsh_fn.optim``: PyTorch's optimizers and learning-rate schedulers, built on optax."""
