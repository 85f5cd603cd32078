"""nn.functional: sparse ops."""

__all__: list[str] = []
