"""Network architectures shipped with dgflow."""
from .mlp import MLPCritic, MLPGenerator, mlp

__all__ = ["MLPCritic", "MLPGenerator", "mlp"]
