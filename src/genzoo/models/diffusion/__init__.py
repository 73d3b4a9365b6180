"""Diffusion: the variational diffusion model on the discrete image (``vdm``) and its U-Net denoiser
(``unet``). Importing the package registers its models."""

from . import vdm, masked  # noqa: F401,I001
