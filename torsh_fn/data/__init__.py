"""``torsh_fn.data`` mirrors ``torch.utils.data``: datasets, samplers, the parallel DataLoader."""
