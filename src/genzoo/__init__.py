"""genzoo: the classic deep generative models of images on one likelihood scale."""

__version__ = "0.1.0"

from . import data, likelihood, models  # noqa: E402
from .models import load_model as load  # noqa: E402
from .errors import GenzooError  # noqa: E402

__all__ = ["data", "likelihood", "models", "load", "GenzooError", "__version__"]
