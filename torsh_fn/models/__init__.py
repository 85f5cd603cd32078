"""The model zoo, with PyTorch/torchvision key names so their checkpoints load unchanged."""
