"""A saved model is a folder (the diffusers convention), and this module is its one home (the names of its files,
in ``genzoo/folder_files.py``, are shared with ``runs.py``).

* ``config.json``: ``{"format": 1, "model": name, "config": {...the constructor's keyword
  arguments...}}``
* ``model.safetensors``: the weights, only ever read from safetensors (never unpickled).

``genzoo.load(path)`` is :func:`load_model`; a training run folder is also a model folder, and a
shipped model's name stands for its folder in pretrained/. A prior trained on a VQ-VAE's codes
(``--data codes:RUN``) also holds ``codes_of.json``, the way to its VQ-VAE: loading it gives the
pair as one model of images (:class:`~genzoo.models.latent.vqvae.CodePrior`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import atomic_write_json, load_state_into, load_weights, read_json, save_weights
from ..errors import CheckpointError, GenzooError
from ..folder_files import CODES_OF_FILE, CONFIG_FILE, EMA_WEIGHTS_FILE, WEIGHTS_FILE  # noqa: F401 (also theirs)
from ..recipes import resolve
from .registry import PAIRS, build

FORMAT = 1


def model_config_record(model) -> dict:
    return {"format": FORMAT, "model": model.name, "config": model.config_dict()}


def save_model(model, folder, overwrite: bool = False) -> None:
    """Write ``model`` as a folder: config.json + model.safetensors (each atomically). A folder that holds a saved
    model already (another model, or a run's) is refused unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder")
    if not overwrite and (folder / CONFIG_FILE).exists():
        raise CheckpointError(f"{folder}: holds a saved model already (a run's, or another save); "
                              f"save(path, overwrite=True) replaces it")
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_FILE, model.state_dict())
    (folder / EMA_WEIGHTS_FILE).unlink(missing_ok=True)  # an older average is not of these weights
    atomic_write_json(folder / CONFIG_FILE, model_config_record(model))


def build_from_record(record: dict, where):
    """The untrained model a config.json record describes; a foreign record is one clear error."""
    if record.get("format") != FORMAT or "model" not in record or not isinstance(record.get("config"), dict):
        raise CheckpointError(f"{where}: not a genzoo model config (expected keys format={FORMAT}, model, config)")
    try:
        return build(record["model"], **record["config"])
    except GenzooError as e:
        raise CheckpointError(f"{where}: {e}") from None


def load_model(folder, plain: bool = False, ema: bool = True):
    """Rebuild a model saved by :func:`save_model` (or a training run folder), in eval mode.
    ``folder`` may also be a shipped model's name (``genzoo.load("row-lstm-binarized-mnist")``).
    A prior of a VQ-VAE's codes comes with its VQ-VAE as one model of images, unless ``plain``.
    ``ema``: where the run kept a moving average of its weights (``ema.safetensors``), load that (what
    ``genzoo eval`` and ``sample`` score by default); ``model.weights`` is then "ema", else "raw"."""
    folder = resolve(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such model folder")
    model = build_from_record(read_json(folder / CONFIG_FILE), folder / CONFIG_FILE)
    average = ema and (folder / EMA_WEIGHTS_FILE).is_file()
    weights = folder / (EMA_WEIGHTS_FILE if average else WEIGHTS_FILE)
    load_state_into(model, load_weights(weights), weights)
    model.eval()
    model.weights = "ema" if average else "raw"
    if plain or not (folder / CODES_OF_FILE).is_file():
        return model
    return PAIRS["codes"](load_model(codes_source(folder), ema=ema), model).eval()


def link_codes(folder, source) -> None:
    """Record in ``folder`` (a prior's run) that its data are the codes of the VQ-VAE in ``source``:
    the way from one to the other (so that both can move together) and the absolute place."""
    folder, source = Path(folder), Path(source).resolve()
    atomic_write_json(folder / CODES_OF_FILE, {"vq_vae": os.path.relpath(source, folder.resolve()),
                                               "vq_vae_absolute": str(source)})


def codes_source(folder) -> Path:
    """The VQ-VAE folder a prior's ``codes_of.json`` names (beside it first, then the absolute place)."""
    link = read_json(Path(folder) / CODES_OF_FILE)
    for where in (Path(folder) / str(link.get("vq_vae", "")), Path(str(link.get("vq_vae_absolute", "")))):
        if link.get("vq_vae") and (where / CONFIG_FILE).is_file():
            return where.resolve()
    raise CheckpointError(f"{folder}: this prior was trained on the codes of the VQ-VAE in "
                          f"{link.get('vq_vae_absolute')!s}, which is not there now")
