"""``torsh_fn.amp``: where PyTorch code finds ``GradScaler`` (``torch.amp.GradScaler``).

Mixed precision in JAX is a matter of dtypes: cast the model (``model.bfloat16()``) or the inputs
and keep the optimizer's master weights as they are; there is no ``autocast`` context. The
scaler is :class:`torsh_fn.optim.GradScaler`, for float16 training.
"""

from .optim.grad_scaler import GradScaler

__all__ = ["GradScaler"]
