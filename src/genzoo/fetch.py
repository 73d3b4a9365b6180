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
import os
import tempfile
import urllib.request
from pathlib import Path

from .errors import DataError


def shared_dirs() -> list[Path]:
    """The project's shared data folder: beside the checkout (../shared) or the working directory."""
    here = Path(__file__).resolve()
    cands = [p.parent / "shared" / "data" for p in here.parents[:4]] + [Path.cwd().parent / "shared" / "data"]
    return cands


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genzoo"


def search_dirs(name: str, data_dir, system: list[Path]) -> list[Path]:
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
