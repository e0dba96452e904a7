"""Model protocol, adapters and architectures."""
from .protocol import AdaptedGenerator, GaussianPrior, LatentGenerator, as_generator, modules_of

__all__ = ["AdaptedGenerator", "GaussianPrior", "LatentGenerator", "as_generator", "modules_of"]
