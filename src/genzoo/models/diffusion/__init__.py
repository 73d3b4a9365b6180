"""Diffusion and its continuous-time kin: the variational diffusion model on the discrete image (``vdm``), masked
diffusion (``masked``), flow matching (``flow_matching``); the U-Net they share (``unet``), the diffusion samplers
(``samplers``) and the ODE solvers (``ode``). Importing the package registers its models."""

from . import vdm, masked, flow_matching  # noqa: F401,I001
