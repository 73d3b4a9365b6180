"""Pictures of a model, as image batches: completions, reconstructions, interpolations.

Each returns uint8 images [N, C, H, W] laid out for ``images.grid`` with the returned number
of columns, so the CLI (one PNG each) and the report (all of them on one page) show the same
thing. They check nothing about the command line; callers do (a model declares what it
can do: ``can_complete``, ``has_code``).
"""

from __future__ import annotations

import torch

from ..models.base import from_unit


@torch.no_grad()
def completions(model, originals, rows: int, samples: int, labels=None, generator=None, **sample_options):
    """Keep the top ``rows`` rows of each image, sample the rest ``samples`` times.

    originals: uint8 [n, C, H, W]. Returns ([n * (samples + 2), C, H, W], samples + 2): one row
    per image: the original, its visible part, then the completions.
    """
    n = len(originals)
    C, H, W = model.image_shape
    known = torch.zeros(C, H, W, dtype=torch.bool)
    known[:, :rows] = True
    device = next(model.parameters()).device
    prefix = originals.repeat_interleave(samples, 0).to(device)
    y = labels.repeat_interleave(samples, 0).to(device) if labels is not None else None
    done = model.sample(len(prefix), generator=generator, prefix=prefix, known=known, y=y, **sample_options).cpu()
    masked = originals.cpu() * known
    out = torch.cat([originals.cpu()[:, None], masked[:, None], done.view(n, samples, C, H, W)],
                    1)  # (n, samples+2, C, H, W)
    return out.flatten(0, 1), samples + 2


@torch.no_grad()
def reconstructions(model, x, generator=None):
    """Test images beside their reconstructions through the code.

    x: uint8 [n, C, H, W]. Returns ([n * k, C, H, W], column names): k = 2 (original,
    reconstruction), or 3 for a denoising model (clean, corrupted, reconstructed from it).
    """
    columns, names = [x], ["original"]
    if getattr(model.config, "corruption", "none") != "none":
        u = model.corrupted(x, generator)
        columns += [from_unit(u, model.levels), from_unit(model.reconstruction(u)[0], model.levels)]
        names += ["corrupted", "reconstruction"]
    else:
        columns.append(model.decode(model.encode(x)))
        names.append("reconstruction")
    return torch.stack(columns, dim=1).flatten(0, 1).cpu(), names  # (n * k, C, H, W): one row per image


@torch.no_grad()
def interpolations(model, x, steps: int):
    """Decode the path (``model.code_path``) between the codes of consecutive pairs of images.

    x: uint8 [2 * pairs, C, H, W]. Returns ([pairs * steps, C, H, W], steps).
    """
    z = model.encode(x)
    z0, z1 = z[0::2], z[1::2]  # (pairs, ...)
    t = torch.linspace(0, 1, steps, dtype=z.dtype, device=z.device)
    path = model.code_path(z0, z1, t)  # (pairs, steps, ...): a line in code space (the model says which)
    return model.decode(path.flatten(0, 1)).cpu(), steps
