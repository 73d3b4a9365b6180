"""genzoo's models: the registry (``names``, ``get``, ``build``), the model folder
(``save_model``, ``load_model`` = ``genzoo.load``), and one package per family (autoregressive/, flows/, latent/,
                                                                                diffusion/, adversarial/)."""

from .base import GenerativeModel
from .folder import build_from_record, link_codes, load_model, model_config_record, save_model
from .registry import (build, config_fields, get, names, option_defaults, option_help, register, register_preset,
                       run_options, summary)

# Each family module registers its models; this order is the registry's (docs/CONTRACT.md).
from . import autoregressive, latent, flows, diffusion, adversarial  # noqa: E402,F401,I001

__all__ = ["GenerativeModel", "build", "build_from_record", "config_fields", "get", "link_codes", "load_model",
           "model_config_record", "names", "option_defaults", "option_help", "register", "register_preset",
           "run_options", "save_model", "summary"]
