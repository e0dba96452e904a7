"""Datasets: 2D toys (and image/text loaders as they land)."""
from . import toy2d

__all__ = ["toy2d"]
