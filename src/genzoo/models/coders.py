"""The encoders and decoders of the latent models (autoencoders, the VAE): image [B, C, H, W] <-> vector [B, n].

Two architectures: ``mlp`` (two hidden layers of ``width``) and ``conv`` (two stride-2 4x4
convolutions and their transposed mirror; H and W divisible by 4).
"""

from __future__ import annotations

from torch import nn

from .base import require, require_positive_ints

ARCHITECTURES = ("mlp", "conv")


def check_coder_config(cfg) -> None:
    """The options :func:`encoder` and :func:`decoder` take from a config: latent_dim, width, architecture."""
    require_positive_ints(cfg, "latent_dim", "width")
    require(cfg.architecture in ARCHITECTURES, f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                                               f"got {cfg.architecture!r}")
    _, H, W = cfg.image_shape
    require(cfg.architecture != "conv" or (H % 4 == 0 and W % 4 == 0),
            f"architecture conv needs H and W divisible by 4, got {H}x{W} (use mlp)")


def encoder(image_shape, out_features: int, architecture: str, width: int) -> nn.Sequential:
    """[B, C, H, W] float -> [B, out_features]. mlp: two hidden layers of ``width``; conv: two
    stride-2 4x4 convolutions (width, 2 width channels; H and W divisible by 4), then linear."""
    C, H, W = image_shape
    if architecture == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, out_features))
    return nn.Sequential(
        nn.Conv2d(C, width, 4, 2, 1), nn.ReLU(),  # (B, w, H/2, W/2)
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),  # (B, 2w, H/4, W/4)
        nn.Flatten(), nn.Linear(2 * width * (H // 4) * (W // 4), out_features))


def decoder(in_features: int, image_shape, out_channels: int, architecture: str, width: int) -> nn.Sequential:
    """[B, in_features] -> [B, out_channels, H, W] (unnormalised: logits or means), the mirror of :func:`encoder`."""
    C, H, W = image_shape
    if architecture == "mlp":
        return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, out_channels * H * W), nn.Unflatten(1, (out_channels, H, W)))
    return nn.Sequential(
        nn.Linear(in_features, 2 * width * (H // 4) * (W // 4)), nn.ReLU(),
        nn.Unflatten(1, (2 * width, H // 4, W // 4)),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),  # (B, w, H/2, W/2)
        nn.ConvTranspose2d(width, out_channels, 4, 2, 1))  # (B, out, H, W)
