"""Where data files are found, and fetched when they are not (checked against a digest).

Looked up in order: ``data_dir`` (or ``data_dir/<name>``), then ``$GENZOO_DATA`` (or
``$GENZOO_DATA/<name>``), then the system locations a loader names (Debian's
``/usr/share/datasets/...``, the project's ``../shared/data``), then the download cache
``~/.cache/genzoo/<name>``; a file found nowhere is downloaded into the first of ``data_dir``
or the cache, and used only if its checksum matches.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.request
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write_bytes
from ..errors import CheckpointError, DataError


def shared_dirs() -> list[Path]:
    """The project's shared data folder: beside the checkout (../shared) or the working directory."""
    here = Path(__file__).resolve()
    cands = [p.parent / "shared" / "data" for p in here.parents[:4]] + [Path.cwd().parent / "shared" / "data"]
    return cands


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genzoo"


def search_dirs(name: str, data_dir, system: list[Path]) -> list[Path]:
    dirs = []
    for what, base in (("--data-dir", data_dir), ("GENZOO_DATA", os.environ.get("GENZOO_DATA"))):
        if base and not Path(base).is_dir():  # a mistyped place was silently passed over
            raise DataError(f"{what} {base}: no such folder")
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
    try:
        atomic_write_bytes(dest, body)
    except CheckpointError as e:
        raise DataError(f"could not keep the download of {url}: {e}") from None
    return dest


def find_or_fetch(name, filename, data_dir, system, alternatives=(), fetch=None) -> Path:
    """The first existing file among ``filename`` and ``alternatives`` in the search dirs, else fetch()."""
    dirs = search_dirs(name, data_dir, system)
    for d in dirs:
        for fn in (filename, *alternatives):
            if (d / fn).is_file():
                return d / fn
    if fetch is None:
        raise DataError(f"{name}: {filename} not found in {', '.join(map(str, dirs))}")
    target = Path(data_dir) / name if data_dir else cache_dir() / name
    return fetch(target / filename)


def parsed(path: Path, reader, *args) -> np.ndarray:
    """``reader(path, *args)`` (an array), kept as .npy in the cache on first use: a text or gzipped
    file is parsed once (binarized MNIST's .amat took 9 s at every start; the .npy loads in 0.03 s).
    The cache is keyed on the file's resolved path, size and modification time and on the reader,
    so a changed file is parsed again; a damaged cache file is parsed again and replaced; a cache
    that cannot be written leaves the result as parsed."""
    path = Path(path)
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{reader.__module__}.{reader.__qualname__}|{args}|1"
    target = cache_dir() / "parsed" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"
    if target.is_file():
        try:
            return np.load(target, allow_pickle=False)
        except (OSError, ValueError):
            pass  # torn or foreign: parse again below
    array = reader(path, *args)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, buffer.getvalue())
    except (OSError, CheckpointError):
        pass  # a read-only cache: nothing kept, the parse stands
    return array
