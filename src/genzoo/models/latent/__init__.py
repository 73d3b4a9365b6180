"""Models with a latent code: the shared encoder/decoder (``coders``), the autoencoders, the VAE and the
VQ-VAE (with an autoregressive prior of its codes as one model of images). Importing the package
registers its models."""

from . import autoencoders, vae, vqvae  # noqa: F401,I001
