"""genzoo's data: datasets as integer images ``uint8 [N, C, H, W]`` with their ``levels``.

``datasets`` holds the built-in sets, ``load`` and ``prepare`` (a run's data recipe) and the
transforms between level counts; ``formats`` reads the file formats (IDX, amat, CIFAR-10
binary records); ``fetch`` finds files and makes checked downloads; ``imagefolder`` reads a
folder of the user's own pictures into a memory-mapped cache.
"""

from . import codes, datasets, fetch, formats, imagefolder
from .datasets import (BINARIZE_MODES, DATASETS, Dataset, binarize, check_fits, dynamic_binarize, fingerprint,
                       fitted_split, load, names,
                       requantize, seen_training_split)
from .codes import prepare
from .fetch import cache_dir, download
from .formats import read_amat, read_cifar, read_idx

__all__ = ["BINARIZE_MODES", "DATASETS", "Dataset", "binarize", "cache_dir", "check_fits", "codes", "datasets",
           "download", "dynamic_binarize", "fetch", "fingerprint", "fitted_split", "formats", "imagefolder", "load",
           "names", "prepare", "read_amat", "read_cifar", "read_idx", "requantize", "seen_training_split"]
