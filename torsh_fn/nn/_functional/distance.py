"""nn.functional: distance ops."""

__all__: list[str] = []
