"""Datasets in, model-ready batches out (the package is being split into one module per step)."""

from .loading import *  # noqa: F403
from .loading import __all__  # noqa: F401
