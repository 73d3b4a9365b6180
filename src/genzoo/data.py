"""Datasets as integer images, and the transforms between level counts.

Every dataset is a :class:`Dataset` whose ``images`` are ``uint8 [N, C, H, W]`` with
values in ``[0, levels)``. Scaling to floats, dequantization and logits happen inside
the models, never here (the contract in docs/CONTRACT.md).

Where files are looked up, in order: ``data_dir`` (or ``data_dir/<name>``), then
``$GENZOO_DATA`` (or ``$GENZOO_DATA/<name>``), then the system location (Debian's
``/usr/share/datasets/fashion-mnist``, the project's ``../shared/data/binarized_mnist``),
then the download cache ``~/.cache/genzoo/<name>``; a file found nowhere is
downloaded from the official address into the first writable of ``data_dir`` or the
cache, and its checksum checked before it is used.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .models.base import to_unit


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
            raise DataError(f"{self.name}: images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
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


# ----------------------------------------------------------------------------- file formats

def _open_bytes(path: Path) -> bytes:
    """Whole file contents, gunzipped when the name ends in .gz; errors name the file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None


def read_idx(path: Path, expect_dims: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (LeCun's MNIST format): magic 0x0000 08 <ndim>."""
    data = _open_bytes(Path(path))
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    if ndim != expect_dims:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expect_dims}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape))
    if len(data) - header != count:
        raise DataError(f"{path}: IDX header promises {count} bytes of data, file holds {len(data) - header} (truncated or corrupt)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_amat(path: Path, row_length: int = 784) -> np.ndarray:
    """Parse the binarized-MNIST .amat text format: one image a line, ``row_length`` 0/1 values."""
    data = np.frombuffer(_open_bytes(Path(path)), dtype=np.uint8)
    if data.size == 0:
        raise DataError(f"{path}: empty file")
    if data[-1] != ord("\n"):
        data = np.concatenate([data, np.array([ord("\n")], np.uint8)])
    is_digit = (data == ord("0")) | (data == ord("1"))
    is_space = (data == ord(" ")) | (data == ord("\t")) | (data == ord("\r"))
    is_newline = data == ord("\n")
    if not np.all(is_digit | is_space | is_newline):
        raise DataError(f"{path}: not a binarized .amat file (values other than 0 and 1)")
    # Each digit token must be a single character: no two digits side by side ("10", "11").
    if np.any(is_digit[1:] & is_digit[:-1]):
        raise DataError(f"{path}: not a binarized .amat file (values other than 0 and 1)")
    line_of = np.cumsum(is_newline) - is_newline  # line index of every byte
    per_line = np.bincount(line_of[is_digit], minlength=int(is_newline.sum()))
    lines_with_values = per_line[per_line > 0]
    bad = np.flatnonzero((per_line != row_length) & (per_line > 0))
    if bad.size:
        raise DataError(f"{path}: line {bad[0] + 1} has {per_line[bad[0]]} values, expected {row_length}")
    if lines_with_values.size == 0:
        raise DataError(f"{path}: no images in file")
    return (data[is_digit] - ord("0")).reshape(-1, row_length)


# ----------------------------------------------------------------------------- locating and fetching

def _shared_dirs() -> list[Path]:
    """The project's shared data folder: beside the checkout (../shared) or the working directory."""
    here = Path(__file__).resolve()
    cands = [p.parent / "shared" / "data" for p in here.parents[:4]] + [Path.cwd().parent / "shared" / "data"]
    return cands


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genzoo"


def _search_dirs(name: str, data_dir, system: list[Path]) -> list[Path]:
    dirs = []
    for base in (data_dir, os.environ.get("GENZOO_DATA")):
        if base:
            dirs += [Path(base), Path(base) / name]
    return dirs + system + [cache_dir() / name]


def _md5_sha(data: bytes, algo: str) -> str:
    return hashlib.new(algo, data).hexdigest()


def download(url: str, dest: Path, checksum: str, algo: str = "md5", decompress_check: bool = False) -> Path:
    """Fetch ``url`` to ``dest`` atomically; refuse it unless its checksum matches.

    ``decompress_check``: the checksum is of the gunzipped contents (for sources whose
    published digests are of the raw file).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            body = r.read()
    except Exception as e:  # network errors come in many types; all mean "could not fetch"
        raise DataError(f"could not download {url}: {e}") from None
    got = _md5_sha(gzip.decompress(body) if decompress_check else body, algo)
    if got != checksum:
        raise DataError(f"download of {url} failed its {algo} check (got {got}, expected {checksum})")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-")
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    os.replace(tmp, dest)
    return dest


def _find_or_fetch(name, filename, data_dir, system, alternatives=(), fetch=None) -> Path:
    """The first existing file among ``filename`` and ``alternatives`` in the search dirs, else fetch()."""
    dirs = _search_dirs(name, data_dir, system)
    for d in dirs:
        for fn in (filename, *alternatives):
            if (d / fn).is_file():
                return d / fn
    if fetch is None:
        raise DataError(f"{name}: {filename} not found in {', '.join(map(str, dirs))}")
    target = Path(data_dir) / name if data_dir else cache_dir() / name
    return fetch(target / filename)


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

        path = _find_or_fetch(name, fn, data_dir, spec["system"], alternatives=(fn[:-3],), fetch=fetch)
        arrays.append(read_idx(path, dims))
    images, labels = arrays
    if len(images) != len(labels):
        raise DataError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    return Dataset(name, split, torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), 256, 10)


def _load_binarized(split: str, data_dir) -> Dataset:
    fn = f"binarized_mnist_{split}.amat"
    system = [d / "binarized_mnist" for d in _shared_dirs()]

    def fetch(dest):
        return download(_BINARIZED_URL + fn, dest, _BINARIZED_SHA256[split], algo="sha256")

    path = _find_or_fetch("binarized-mnist", fn, data_dir, system, alternatives=(fn + ".gz",), fetch=fetch)
    rows = read_amat(path)
    images = torch.from_numpy(rows.reshape(-1, 1, 28, 28).copy())
    # The static binarization has no labels; -1 marks "unlabelled".
    return Dataset("binarized-mnist", split, images, torch.full((len(images),), -1, dtype=torch.int64), 2, 0)


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
    "binarized-mnist": (("train", "valid", "test"), "static binarized MNIST (Larochelle & Murray 2011), 2 levels, 50k/10k/10k"),
    "mnist": (("train", "test"), "MNIST 28x28, 256 levels, 60k/10k"),
    "fashion-mnist": (("train", "test"), "Fashion-MNIST 28x28, 256 levels, 60k/10k"),
}


def names() -> list[str]:
    return list(DATASETS)


def load(name: str, split: str = "train", data_dir=None) -> Dataset:
    """Load one split of a dataset by name (see :data:`DATASETS`)."""
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

    spec: {"name", "data_dir", "levels" (None: the dataset's own), "binarize" (none | threshold |
    dynamic)}. Returns (dataset with the images the model sees, levels, batch_transform or None).
    Dynamic binarization redraws training batches (batch_transform); the test split is
    binarized once with a fixed seed, so every evaluation scores the same images.
    """
    ds = load(spec["name"], split, spec.get("data_dir"))
    mode = spec.get("binarize", "none")
    if mode not in BINARIZE_MODES:
        raise DataError(f"binarize must be one of {', '.join(BINARIZE_MODES)}, got {mode!r}")
    images, levels, transform = ds.images, ds.levels, None
    if spec.get("levels") and mode != "none":
        raise DataError("choose either --levels or --binarize, not both")
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
