"""Adversarial models: the GAN (DCGAN, WGAN-GP), whose likelihood comes only from annealed importance sampling
with an observation model (``models/ais.py``). Importing the package registers its models."""

from . import gan  # noqa: F401
