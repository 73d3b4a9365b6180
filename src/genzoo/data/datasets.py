"""Datasets as integer images, and the transforms between level counts.

Every dataset is a :class:`Dataset` whose ``images`` are ``uint8 [N, C, H, W]`` with
values in ``[0, levels)``. Scaling to floats, dequantization and logits happen inside
the models, never here (the contract in docs/CONTRACT.md).

Where files are looked up and how they are fetched: :mod:`genzoo.data.fetch`; their formats:
:mod:`genzoo.data.formats`; a folder of the user's own images: :mod:`genzoo.data.imagefolder`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import imagefolder
from . import fetch as fetch_mod
from .fetch import download, find_or_fetch, search_dirs, shared_dirs
from .formats import read_amat, read_cifar, read_idx
from ..models.base import to_unit


@dataclass
class Dataset:
    """``images``: uint8 [N, C, H, W] in [0, levels); ``labels``: int64 [N]."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    levels: int
    num_classes: int

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"{self.name}: images must be uint8 [N, C, H, W], got {self.images.dtype} "
                            f"{tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.images) and int(self.images.max()) >= self.levels:
            raise DataError(f"{self.name}: pixel value {int(self.images.max())} outside [0, {self.levels})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)


# ----------------------------------------------------------------------------- transforms

def requantize(images: torch.Tensor, levels: int, new_levels: int) -> torch.Tensor:
    """Map values in [0, levels) to [0, new_levels) by equal-width bins: floor(x * k' / k)."""
    if new_levels < 2 or new_levels > 256:
        raise DataError(f"levels must be in [2, 256], got {new_levels}")
    if new_levels == levels:
        return images
    return (images.long() * new_levels // levels).to(torch.uint8)


def binarize(images: torch.Tensor, levels: int, threshold: float = 0.5) -> torch.Tensor:
    """Static binarization: 1 where x / (k - 1) >= threshold."""
    return (to_unit(images, levels) >= threshold).to(torch.uint8)


def dynamic_binarize(images: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization (Salakhutdinov & Murray 2008): x_b ~ Bernoulli(x / (k - 1)), redrawn each epoch."""
    p = to_unit(images, levels)
    return torch.bernoulli(p, generator=generator).to(torch.uint8)


# ----------------------------------------------------------------------------- the datasets

_MNIST_FILES = {
    # name in the official distribution: md5 of the published .gz file
    "mnist": {
        "urls": ["https://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "system": [],
    },
    "fashion-mnist": {
        "urls": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "system": [Path("/usr/share/datasets/fashion-mnist")],
    },
}

# sha256 of the *uncompressed* .amat files (Larochelle & Murray 2011), as published.
_BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_BINARIZED_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}


def _load_idx_pair(name: str, split: str, data_dir) -> Dataset:
    spec = _MNIST_FILES[name]
    prefix = {"train": "train", "test": "t10k"}[split]
    arrays = []
    for kind, dims in (("images-idx3-ubyte", 3), ("labels-idx1-ubyte", 1)):
        fn = f"{prefix}-{kind}.gz"

        def fetch(dest, fn=fn):
            errors = []
            for base in spec["urls"]:
                try:
                    return download(base + fn, dest, spec["md5"][fn])
                except DataError as e:
                    errors.append(str(e))
            raise DataError(f"{name}: {fn} not found locally and not downloadable ({errors[-1]})")

        path = find_or_fetch(name, fn, data_dir, spec["system"], alternatives=(fn[:-3],), fetch=fetch)
        arrays.append(fetch_mod.parsed(path, read_idx, dims) if path.suffix == ".gz" else read_idx(path, dims))
    images, labels = arrays
    if len(images) != len(labels):
        raise DataError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    return Dataset(name, split, torch.from_numpy(images.copy()).unsqueeze(1),
                   torch.from_numpy(labels.astype(np.int64)), 256, 10)


def _load_binarized(split: str, data_dir) -> Dataset:
    fn = f"binarized_mnist_{split}.amat"
    system = [d / "binarized_mnist" for d in shared_dirs()]

    def fetch(dest):
        return download(_BINARIZED_URL + fn, dest, _BINARIZED_SHA256[split], algo="sha256")

    path = find_or_fetch("binarized-mnist", fn, data_dir, system, alternatives=(fn + ".gz",), fetch=fetch)
    rows = fetch_mod.parsed(path, read_amat)  # the text is parsed once, then cached
    images = torch.from_numpy(rows.reshape(-1, 1, 28, 28).copy())
    # The static binarization has no labels; -1 marks "unlabelled".
    return Dataset("binarized-mnist", split, images, torch.full((len(images),), -1, dtype=torch.int64), 2, 0)


# Colour MNIST: each static-binarized digit in a foreground colour on a background colour, 4 levels
# per channel (the colored MNIST of the Berkeley deep unsupervised learning course, built here from
# the static binarization so that it loads offline). One seed per split fixes every colour.
_COLOUR_SEEDS = {"train": 11, "valid": 12, "test": 13}


def _load_colour_mnist(split: str, data_dir) -> Dataset:
    binary = _load_binarized(split, data_dir).images.numpy()  # (N, 1, 28, 28) in {0, 1}
    g = np.random.default_rng(_COLOUR_SEEDS[split])
    fg, bg = g.integers(0, 4, (len(binary), 3)), g.integers(0, 4, (len(binary), 3))
    alike = np.abs(fg - bg).sum(1) < 4  # too close to tell apart: draw those pairs again
    while alike.any():
        fg[alike], bg[alike] = g.integers(0, 4, (alike.sum(), 3)), g.integers(0, 4, (alike.sum(), 3))
        alike = np.abs(fg - bg).sum(1) < 4
    images = np.where(binary == 1, fg[:, :, None, None], bg[:, :, None, None]).astype(np.uint8)  # (N, 3, 28, 28)
    return Dataset("colour-mnist", split, torch.from_numpy(images), torch.full((len(images),), -1, dtype=torch.int64),
                   4, 0)


_CIFAR_URL, _CIFAR_MD5 = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"
_CIFAR_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}


def _fetch_cifar(dest: Path) -> Path:
    """Download the binary tarball (md5 checked) and take out the six batch files, never a pickle."""
    import tarfile

    tarball = download(_CIFAR_URL, dest.parent / "cifar-10-binary.tar.gz", _CIFAR_MD5)
    with tarfile.open(tarball) as tar:
        for fn in _CIFAR_FILES["train"] + _CIFAR_FILES["test"]:
            member = tar.extractfile(f"cifar-10-batches-bin/{fn}")
            if member is None:
                raise DataError(f"{tarball}: no cifar-10-batches-bin/{fn} inside")
            (dest.parent / fn).write_bytes(member.read())
    return dest


def _load_cifar10(split: str, data_dir) -> Dataset:
    def find(fn, fetch=None):
        return find_or_fetch("cifar10", fn, data_dir, [], alternatives=(f"cifar-10-batches-bin/{fn}",), fetch=fetch)

    every = _CIFAR_FILES["train"] + _CIFAR_FILES["test"]
    missing = []
    for fn in every:
        try:
            find(fn)
        except DataError:
            missing.append(fn)
    if missing and len(missing) < len(every):  # a partial copy is not a failed download: say which file is absent
        raise DataError(f"cifar10: {', '.join(missing)} not found beside the other batch files "
                        f"({', '.join(map(str, search_dirs('cifar10', data_dir, [])[:2]))} searched first)")
    parts = [read_cifar(find(fn, _fetch_cifar)) for fn in _CIFAR_FILES[split]]
    images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return Dataset("cifar10", split, torch.from_numpy(images), torch.from_numpy(labels), 256, 10)


def _load_digits(split: str) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.data.astype(np.uint8).reshape(-1, 1, 8, 8))  # values 0..16
    labels = torch.from_numpy(d.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))  # fixed split
    idx = order[:1500] if split == "train" else order[1500:]
    return Dataset("digits", split, images[idx].contiguous(), labels[idx].contiguous(), 17, 10)


DATASETS = {
    # name: (splits, one-line description)
    "digits": (("train", "test"), "scikit-learn's bundled 8x8 digits, 17 levels, 1500/297 (embedded, no files)"),
    "binarized-mnist": (("train", "valid", "test"), "static binarized MNIST (Larochelle & Murray 2011), 2 levels, "
                                                    "50k/10k/10k"),
    "mnist": (("train", "test"), "MNIST 28x28, 256 levels, 60k/10k"),
    "fashion-mnist": (("train", "test"), "Fashion-MNIST 28x28, 256 levels, 60k/10k"),
    "colour-mnist": (("train", "valid", "test"), "static binarized MNIST in colour: 3x28x28, 4 levels a channel, a "
                                                "seeded foreground and background colour per image, 50k/10k/10k"),
    "cifar10": (("train", "test"), "CIFAR-10 3x32x32, 256 levels, 50k/10k (binary version, cifar-10-batches-bin)"),
}
FOLDER_SPLITS = ("train", "test")


def names() -> list[str]:
    return list(DATASETS)


def load(name: str, split: str = "train", data_dir=None, image_size: int | None = None,
         grayscale: bool = False) -> Dataset:
    """Load one split of a dataset by name (see :data:`DATASETS`), or of a folder of images
    (a name with a "/", or an existing folder: :mod:`genzoo.imagefolder`; ``image_size`` and
    ``grayscale`` apply to folders only)."""
    if imagefolder.is_folder_name(name):
        if data_dir is not None:  # it was silently ignored, a missing one included
            raise DataError(f"--data-dir {data_dir}: applies to named datasets; a folder of images (--data {name}) "
                            f"is its own place")
        if split not in FOLDER_SPLITS:
            raise DataError(f"a folder of images has the splits {', '.join(FOLDER_SPLITS)}, not {split!r}")
        images, labels, classes = imagefolder.load(name, split, image_size, grayscale,
                                                   fetch_mod.cache_dir() / "folders")
        return Dataset(str(name), split, images, labels, 256, classes)
    if image_size or grayscale:
        raise DataError(f"--image-size and --grayscale apply to a folder of images, not to the dataset {name!r}")
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if split not in DATASETS[name][0]:
        raise DataError(f"dataset {name!r} has no split {split!r}; choose from {', '.join(DATASETS[name][0])}")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataError(f"data dir {data_dir}: not an existing folder")
    if name == "digits":
        ds = _load_digits(split)
    elif name == "binarized-mnist":
        ds = _load_binarized(split, data_dir)
    elif name == "colour-mnist":
        ds = _load_colour_mnist(split, data_dir)
    elif name == "cifar10":
        ds = _load_cifar10(split, data_dir)
    else:
        ds = _load_idx_pair(name, split, data_dir)
    return ds


# ----------------------------------------------------------------------------- a run's data recipe

BINARIZE_MODES = ("none", "threshold", "dynamic")


def check_fits(model, ds: Dataset, levels: int, where: str = "") -> None:
    """The prepared images (``ds`` seen at ``levels``) are what ``model`` takes (its image_shape and levels)."""
    if tuple(ds.image_shape) != tuple(model.image_shape) or levels != model.levels:
        raise DataError(f"{where + ': ' if where else ''}{ds.name} images are {list(ds.image_shape)} with {levels} "
                        f"levels; the model takes {list(model.image_shape)} with {model.levels} levels")


def prepare(spec: dict, split: str):
    """Apply a run's data recipe to one split.

    spec: {"name" (a dataset or a folder of images), "data_dir", "levels" (None: the dataset's
    own), "binarize" (none | threshold | dynamic), and for a folder "image_size", "grayscale"}. Returns (dataset
    with the images the model sees, levels, batch_transform or None).
    Dynamic binarization redraws training batches (batch_transform); the test split is
    binarized once with a fixed seed, so every evaluation scores the same images.
    """
    ds = load(spec["name"], split, spec.get("data_dir"), spec.get("image_size"), bool(spec.get("grayscale")))
    mode = spec.get("binarize", "none")
    if mode not in BINARIZE_MODES:
        raise DataError(f"binarize must be one of {', '.join(BINARIZE_MODES)}, got {mode!r}")
    images, levels, transform = ds.images, ds.levels, None
    if spec.get("levels") and mode != "none":
        raise DataError("choose either --levels or --binarize, not both")
    if spec.get("levels") and int(spec["levels"]) > ds.levels:
        raise DataError(f"--levels {spec['levels']}: {ds.name} has {ds.levels} levels; re-quantizing to more would "
                        f"invent levels the data does not have (choose at most {ds.levels})")
    if spec.get("levels"):
        images, levels = requantize(images, ds.levels, int(spec["levels"])), int(spec["levels"])
    elif mode == "threshold":
        images, levels = binarize(images, ds.levels), 2
    elif mode == "dynamic" and ds.levels > 2:
        src_levels = ds.levels
        if split == "train":
            def transform(x, g):
                return dynamic_binarize(x, src_levels, g)
        else:
            images = dynamic_binarize(images, src_levels, torch.Generator().manual_seed(0))
        levels = 2
    # With a batch_transform the stored images keep their own levels; the model sees `levels`.
    out = Dataset(ds.name, split, images, ds.labels, ds.levels if transform else levels, ds.num_classes)
    return out, levels, transform


def fitted_split(model, spec: dict, split: str, where: str = "") -> Dataset:
    """One split prepared by the recipe ``spec`` and checked to fit ``model`` (its shape and levels):
    what every command that scores or shows a run's images reads."""
    ds, levels, _ = prepare(spec, split)
    check_fits(model, ds, levels, where)
    return ds


def seen_training_split(spec: dict) -> Dataset:
    """The training split as the model sees it; with dynamic binarization one fixed draw (seed 0),
    so that sample-quality figures and pictures compare samples with the same images every time."""
    ds, levels, transform = prepare(spec, "train")
    if transform is None:
        return ds
    return Dataset(ds.name, ds.split, transform(ds.images, torch.Generator().manual_seed(0)), ds.labels, levels,
                   ds.num_classes)


def fingerprint(ds: Dataset) -> dict:
    """What a run records of each split it trained and was scored on, to notice later that the data
    changed (pictures added to or removed from a folder reshuffle its seeded split): the count and a
    checksum of the images and labels as the model sees them. Where the files are does not enter,
    so a moved folder with the same pictures has the same fingerprint."""
    h = hashlib.sha256(f"{tuple(ds.images.shape)}|{ds.levels}|".encode())
    h.update(ds.images.contiguous().numpy().tobytes())
    h.update(ds.labels.contiguous().numpy().tobytes())
    return {"count": len(ds), "sha256": h.hexdigest()[:32]}
