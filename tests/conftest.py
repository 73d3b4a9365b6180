import itertools
import json
import os

import pytest
import torch

import genzoo

# --precision auto picks bf16 on CPUs with native bf16: the suite's figures must not depend on the CPU
# (subprocesses such as torchrun inherit this); test_precision_auto sets it per test.
os.environ["GENZOO_NATIVE_BF16"] = "0"

TINY = {
    "pixelcnn": dict(hidden_channels=6, num_layers=2, head_channels=8),
    "gated-pixelcnn": dict(hidden_channels=6, num_layers=2, head_channels=8, kernel=3, first_kernel=3),
    "row-lstm": dict(hidden_channels=6, num_layers=2, head_channels=8, first_kernel=3),
    "diagonal-bilstm": dict(hidden_channels=6, num_layers=2, head_channels=8, first_kernel=3),
    "pixel-transformer": dict(embed_dim=8, num_layers=2, num_heads=2),
    "nade": dict(hidden_units=8),
    "made": dict(hidden_units=12, num_layers=2),
    "pixelcnn-pp": dict(hidden_channels=4, num_resnet=1, num_scales=2, mixtures=2),
    "pixelsnail": dict(hidden_channels=4, num_blocks=1, num_resnet=1, key_channels=4, value_channels=4, mixtures=2),
    "vq-vae": dict(codebook_size=4, code_dim=3, hidden_channels=8, num_downsamples=1, num_res_blocks=1),
    "glow": dict(hidden_channels=8, steps_per_scale=2),
    "diffusion": dict(channels=8, resolutions=2, num_res_blocks=1),
    "masked-diffusion": dict(channels=8, resolutions=2, num_res_blocks=1),
    "flow-matching": dict(channels=8, resolutions=2, num_res_blocks=1),
    "gan": dict(width=4, latent_dim=3),
}
# Every test file takes its model's tiny options from TINY (one table, not one a file).
# Families and capabilities from the registry, never typed: a model registered anywhere (a test file included)
# is covered by every test of what it declares.
AUTOREGRESSIVE = [n for n in genzoo.models.names() if genzoo.models.get(n).raster_order]
CONDITIONAL = [n for n in AUTOREGRESSIVE if "num_classes" in genzoo.models.option_defaults(n)]


def tiny_flags(name, **over) -> list:
    """A model's tiny options (TINY, with ``over`` changed) as command-line flags, for tests that train by the CLI."""
    return [w for k, v in {**TINY.get(name, {}), **over}.items() for w in ("--" + k.replace("_", "-"), str(v))]


# The command-line tests' PixelCNN, on one thread: TINY's, a little wider, so that one epoch of 15 steps on the digits
# already beats the uniform distribution (tests/test_cli.py checks the figure).
TINY_ARGS = [*tiny_flags("pixelcnn", hidden_channels=8, head_channels=16), "--threads", "1"]


def tiny(name, image_shape=(1, 4, 4), levels=2, seed=0, **kw):
    torch.manual_seed(seed)
    return genzoo.models.build(name, image_shape=image_shape, levels=levels, **{**TINY.get(name, {}), **kw})


def all_images(image_shape, levels):
    """Every image of the given shape and level count: uint8 [levels**D, C, H, W]."""
    D = image_shape[0] * image_shape[1] * image_shape[2]
    return torch.tensor(list(itertools.product(range(levels), repeat=D)), dtype=torch.uint8).view(-1, *image_shape)


def weights(run):
    """The committed weights of a run folder: {name: tensor}."""
    from genzoo.checkpoint import load_weights

    return load_weights(run / "model.safetensors")


def metrics(run):
    """The records of a run's metrics.jsonl, in order."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
