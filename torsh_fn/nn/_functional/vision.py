"""nn.functional: vision ops."""

__all__: list[str] = []
