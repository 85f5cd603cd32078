"""nn.functional: loss ops."""

__all__: list[str] = []
