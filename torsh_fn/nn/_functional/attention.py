"""nn.functional: attention ops."""

__all__: list[str] = []
