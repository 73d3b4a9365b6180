"""Image grids as PNG files (Pillow), written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import atomic_write_bytes, check_writable
from .errors import GenzooError


def gap_pattern(height: int, width: int) -> np.ndarray:
    """The separator between images: a black and white checkerboard of 1-pixel squares, [H, W] uint8.

    Alternating black and white stands out against any content, grey, black, white or
    coloured (a plain grey gap would vanish between images of mid-grey levels)."""
    yy, xx = np.indices((height, width))
    return np.where((yy + xx) % 2 == 0, 0, 255).astype(np.uint8)



def grid(images: torch.Tensor, levels: int, nrow: int | None = None, scale: int = 1,
         pad: int | None = None) -> np.ndarray:
    """uint8 levels [N, C, H, W] -> uint8 picture [rows*(H+pad)+pad, cols*(W+pad)+pad(, 3)] in 0..255.

    Each image is upscaled ``scale`` times (nearest neighbour) and framed by a gap of ``pad``
    pixels (default: a quarter of an upscaled image's pixel block, at least 2) drawn in
    :func:`gap_pattern`, so neighbours never run into each other.
    """
    n, c, h, w = images.shape
    pad = max(2, scale // 4 * 2) if pad is None else pad
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    pix = (images.long() * 255 // (levels - 1)).to(torch.uint8).cpu().numpy()  # (N, C, H, W)
    if scale > 1:
        pix = pix.repeat(scale, axis=2).repeat(scale, axis=3)
        h, w = h * scale, w * scale
    H, W = rows * (h + pad) + pad, nrow * (w + pad) + pad
    out = np.repeat(gap_pattern(H, W)[None], c, axis=0)  # (C, H, W): the separator everywhere, then the images
    for i in range(n):
        r, q = divmod(i, nrow)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = pix[i]
    return out[0] if c == 1 else out.transpose(1, 2, 0)


def check_output_path(path, suffixes=(".png",)) -> Path:
    """An output file: one of ``suffixes``, in an existing folder, writable there (tried for real).
    Callers check it before any work is done, so a bad path is one line and nothing computed."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise GenzooError(f"{path}: the output must be a {' or '.join(suffixes)} file")
    if path.parent.exists() and not path.parent.is_dir():
        raise GenzooError(f"{path.parent}: is a file, not a folder for the output")
    if not path.parent.is_dir():
        raise GenzooError(f"{path.parent}: no such folder for the output")
    check_writable(path)
    return path


def check_png_path(path) -> Path:
    return check_output_path(path, (".png",))


def png_bytes(picture: np.ndarray) -> bytes:
    """A picture from :func:`grid` ([H, W] or [H, W, 3] uint8) encoded as PNG."""
    if picture.ndim == 3 and picture.shape[2] not in (3,):
        raise GenzooError(f"cannot write {picture.shape[2]}-channel images as PNG (1 or 3 channels)")
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


def save_png(picture: np.ndarray, path) -> None:
    path = check_png_path(path)
    atomic_write_bytes(path, png_bytes(picture))


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display is assumed anywhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png_bytes(fig, dpi: int = 80, **savefig_options) -> bytes:
    """A matplotlib figure encoded as PNG; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **savefig_options)
    pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig, path, dpi: int = 80) -> None:
    """A matplotlib figure as a PNG file, written atomically."""
    path = check_png_path(path)
    atomic_write_bytes(path, figure_png_bytes(fig, dpi))


def default_scale(height: int) -> int:
    """Upscale so an image is at least 64 pixels high: an 8x8 digit is shown 8x, a 28x28 one 2x."""
    return max(1, 64 // height)
