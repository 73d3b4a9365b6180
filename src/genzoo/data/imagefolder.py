"""A folder of the user's own images as a dataset: ``genzoo train M --data PATH``.

Layout (the usual one): class subfolders give labels (``PATH/cat/*.png``, ``PATH/dog/*.jpg``;
files directly in PATH are unlabelled, label -1); ``PATH/train`` and ``PATH/test`` are the
splits when both exist, else a fixed, seeded 90/10 split of everything (seed 0, stated).
Any file Pillow reads is an image (PNG, JPEG, BMP, GIF, WebP, TIFF ...); hidden files are
skipped. Images become uint8 [C, S, S]: RGB (C = 3) unless every image is grey or
``grayscale`` asks for one channel; with ``image_size`` S each is centre-cropped to a square
and resized (Lanczos), without it all must have one size.

Decoded once into a uint8 cache (``~/.cache/genzoo/folders/<key>.npy``, memory-mapped, so a
large folder loads in seconds the second time). Training and ``--levels`` still copy the
images into memory, so a folder must fit in memory to train on it. The key hashes
the folder's path, the options and every file's name, size and modification time, so any
change to the folder makes a new cache. A file Pillow cannot read stops everything with one
line naming it, before a run folder is made.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from ..errors import DataError

SPLIT_SEED = 0
TEST_FRACTION = 0.1
_PILLOW_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def is_folder_name(name: str) -> bool:
    """Does a --data value name a folder of images (rather than a dataset name)?"""
    return "/" in name or os.sep in name or Path(name).is_dir()


def _files(root: Path) -> list[Path]:
    """Every file below ``root`` but hidden ones. A link that leads nowhere stops the run, as an
    unreadable file does (it was skipped without a word while an unreadable file stopped everything)."""
    found = []
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_symlink() and not p.exists():
            raise DataError(f"{p}: a link to {os.readlink(p)}, which does not exist")
        if p.is_file():
            found.append(p)
    return found


def _labelled(root: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """(files, labels, class names) under ``root``: its subfolders are the classes, files directly in it unlabelled."""
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = classes if classes is not None else subdirs
    loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    if subdirs and loose:
        raise DataError(f"{root}: holds both class folders ({', '.join(subdirs[:3])}) and loose files "
                        f"({loose[0].name}); put every image in a class folder, or use no class folders")
    if not subdirs:
        return _files(root), [-1] * len(_files(root)), []
    files, labels = [], []
    for d in subdirs:
        if d not in classes:
            raise DataError(f"{root / d}: a class the training split does not have ({', '.join(classes)})")
        found = _files(root / d)
        if not found:
            raise DataError(f"{root / d}: an empty class folder (a class with no images); remove it or add some")
        files += found
        labels += [classes.index(d)] * len(found)
    return files, labels, classes


def listing(path, split: str) -> tuple[list[Path], list[int], list[str]]:
    """The files of one split, their labels and the class names (empty when unlabelled)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"--data {path}: not a folder of images")
    has = [s for s in ("train", "test") if (root / s).is_dir()]
    if len(has) == 1:  # it used to become a single class named "train"
        raise DataError(f"{root}: has a {has[0]}/ folder but no {'test' if has[0] == 'train' else 'train'}/ one; "
                        f"give both splits, or no split folders (then a seeded 90/10 split is made)")
    if has:
        _, _, classes = _labelled(root / "train")
        files, labels, test_classes = _labelled(root / split, classes or None)
        if split == "test" and bool(classes) != bool(test_classes):
            raise DataError(f"{root}: {'train' if classes else 'test'}/ has class folders and "
                            f"{'test' if classes else 'train'}/ has none; label both splits or neither")
        if not files:
            raise DataError(f"{root / split}: no image files")
        return files, labels, classes
    files, labels, classes = _labelled(root)
    if not files:
        raise DataError(f"--data {path}: no image files in this folder")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
    n_test = max(1, round(TEST_FRACTION * len(files))) if len(files) > 1 else 0
    chosen = order[:n_test] if split == "test" else order[n_test:]
    if not len(chosen):
        raise DataError(f"--data {path}: {len(files)} file(s) ({', '.join(f.name for f in files[:3])}) are too few "
                        f"for a train and a test split")
    chosen = np.sort(chosen)
    return [files[i] for i in chosen], [labels[i] for i in chosen], classes


def _open(path: Path, decode: bool = True) -> Image.Image:
    """The image at ``path`` (decoded, or only its header read); one line naming the file if Pillow cannot."""
    try:
        img = Image.open(path)
        if decode:
            img.load()
    except _PILLOW_ERRORS as e:
        why = str(e).splitlines()[0][:120] if str(e).strip() else ""
        detail = f"{type(e).__name__}{': ' + why if why else ''}"
        raise DataError(f"{path}: not an image Pillow can read ({detail})") from None
    return img


def _is_grey(img: Image.Image) -> bool:
    return img.mode in ("1", "L", "LA", "I", "I;16", "F") or (img.mode == "P" and img.palette.mode == "L")


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # what Pillow opens a 16-bit grey picture as
BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as a page shows them


def as_seen(img: Image.Image) -> Image.Image:
    """The picture as an image viewer shows it: the EXIF orientation applied; 16-bit grey scaled to
    8 bits (v / 257, rounded: Pillow's own conversion clips every value above 255 to white);
    transparency (an alpha channel, or a palette's or a grey image's transparent entry) composited
    on white (BACKGROUND); palette, CMYK and the other modes become L or RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT_MODES:
        grey = np.rint(np.asarray(img, dtype=np.float64) / 257)
        img = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L")  # 16-bit grey never carries alpha here
    transparent = img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info
    if transparent:
        on_white = Image.new("RGBA", img.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(on_white, img.convert("RGBA"))
    return img if img.mode in ("L", "RGB") else img.convert("RGB")


def _convert(img: Image.Image, channels: int, size: int | None) -> np.ndarray:
    """One image as uint8 [C, H, W], as it looks (:func:`as_seen`): centre-cropped to a square and
    resized to ``size`` if given."""
    img = as_seen(img).convert("L" if channels == 1 else "RGB")
    if size:
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _cache_key(files: list[Path], labels: list[int], channels_hint: str, size) -> str:
    h = hashlib.sha256(json.dumps({"v": 2, "mode": channels_hint, "size": size, "labels": labels}).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _decode_into_cache(files, channels: int, size, target: Path, name: str) -> None:
    """Decode every file into a .npy at ``target`` (written beside it, then renamed: all or nothing)."""
    first = _convert(_open(files[0]), channels, size)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), *first.shape))
        for i, f in enumerate(tqdm(files, desc=f"caching {name}", unit="image", disable=None, file=sys.stderr,
                                   leave=False)):
            arr = first if i == 0 else _convert(_open(f), channels, size)
            if arr.shape != first.shape:
                raise DataError(f"{f}: {arr.shape[2]}x{arr.shape[1]} pixels, but {files[0]} is "
                                f"{first.shape[2]}x{first.shape[1]}: the images differ in size; pass --image-size S "
                                f"(centre-crop and resize every image to S x S)")
            out[i] = arr
        out.flush()
        del out
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _channels(path, grayscale: bool) -> int:
    """1 or 3 for the whole dataset (both splits): 1 if asked, or if every image is grey; read from headers only."""
    if grayscale:
        return 1
    files = listing(path, "train")[0] + listing(path, "test")[0]
    return 1 if all(_is_grey(_open(f, decode=False)) for f in files) else 3


def load(path, split: str, image_size: int | None, grayscale: bool, cache_root: Path) -> tuple:
    """(images uint8 [N, C, S, S] memory-mapped, labels int64 [N], number of classes) of one split."""
    files, labels, classes = listing(path, split)
    channels = _channels(path, grayscale)
    target = cache_root / f"{_cache_key(files, labels, f'c{channels}', image_size)}.npy"
    if not target.is_file():
        _decode_into_cache(files, channels, image_size, target, f"{Path(path).name} {split}")
    try:  # copy-on-write mapping: pages are read from disk as used, and torch may wrap it without a copy
        images = np.load(target, mmap_mode="c")
    except (OSError, ValueError) as e:
        raise DataError(f"{target}: a damaged image cache ({e}); delete it") from None
    if images.shape[0] != len(files) or images.ndim != 4:
        raise DataError(f"{target}: a damaged image cache ({images.shape} for {len(files)} files); delete it")
    return torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64), len(classes)
