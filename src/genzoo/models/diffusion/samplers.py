"""The diffusion samplers, apart from the network (as diffusers keeps its schedulers): one step of each from the
network's noise prediction eps_hat(z_t, t), in the -log SNR parametrisation gamma(t) of the variance-preserving
process z_t = alpha_t x + sigma_t eps, alpha_t^2 = sigmoid(-gamma), sigma_t^2 = sigmoid(gamma) (Kingma et al. 2021).

* ancestral: a draw from the posterior q(z_s | z_t, x_hat) (Ho et al. 2020; VDM appendix A);
* DDIM: the deterministic update z_s = alpha_s x_hat + sigma_s eps_hat (Song et al. 2021), the probability-flow
  ODE's first-order (Euler) solver in the log-SNR.
"""

from __future__ import annotations

import math

import torch


def alpha_sigma(gamma):
    """(alpha, sigma) of the variance-preserving process at -log SNR gamma (any shape)."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()


def posterior_step(z, eps, g_t, g_s, ddim: bool, noise, clip: bool = True):
    """z_t -> z_s: the posterior q(z_s | z_t, x_hat) (ancestral, s < t), or the DDIM update (either way;
    ``clip``: x_hat clipped to the data's range, as DDPM's sampler does; inversion must not)."""
    (a_t, s_t), (a_s, s_s) = alpha_sigma(g_t), alpha_sigma(g_s)
    x_hat = (z - s_t * eps) / a_t  # the prediction of x [-1, 1], clipped to the data's range (both samplers)
    x_hat = x_hat.clamp(-1, 1) if clip else x_hat
    if ddim:
        return a_s * x_hat + s_s * eps
    c = -torch.expm1(g_s - g_t)  # 1 - SNR(t) / SNR(s) = sigma_{t|s}^2 / sigma_t^2
    # q(z_s | z_t, x_hat): mean (1 - c) (alpha_s / alpha_t) z_t + c alpha_s x_hat, variance c sigma_s^2 (VDM
    # appendix A); unclipped, x_hat = (z - sigma_t eps) / alpha_t makes it (alpha_s / alpha_t)(z - c sigma_t eps)
    return (1 - c) * (a_s / a_t) * z + c * a_s * x_hat + (s_s ** 2 * c).sqrt() * noise


def spherical_path(z0, z1, t):
    """Spherical interpolation between noises: z0, z1 [P, ...], t [S] -> [P, S, ...]. A straight line
    passes through noise of too small a norm, which the sampler turns into flat grey (DDIM section 5.3)."""
    a, b = z0.flatten(1), z1.flatten(1)  # (P, D)
    omega = torch.acos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).clamp(1e-6, math.pi - 1e-6)  # (P,)
    w0 = torch.sin((1 - t[None, :]) * omega[:, None]) / torch.sin(omega)[:, None]  # (P, S)
    w1 = torch.sin(t[None, :] * omega[:, None]) / torch.sin(omega)[:, None]
    shape = (*w0.shape, *[1] * (z0.dim() - 1))
    return w0.view(shape) * z0[:, None] + w1.view(shape) * z1[:, None]  # (P, S, ...)
