"""Model protocol, adapters and architectures."""
from .modules import attach_modules, frozen, modules_of
from .protocol import AdaptedGenerator, GaussianPrior, LatentGenerator, as_generator

__all__ = ["AdaptedGenerator", "GaussianPrior", "LatentGenerator", "as_generator", "attach_modules", "frozen",
           "modules_of"]
