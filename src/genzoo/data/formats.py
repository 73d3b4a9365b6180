"""File formats of the datasets, each parsed with checks that name the file on any error:
IDX (MNIST, Fashion-MNIST), the binarized-MNIST .amat text, CIFAR-10's binary records.
No format here is ever unpickled."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError


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
        raise DataError(f"{path}: IDX header promises {count} bytes of data, file holds {len(data) - header} "
                        f"(truncated or corrupt)")
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


CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue 32x32 planes, row by row


def read_cifar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 binary batch (``data_batch_N.bin``, ``test_batch.bin``): fixed 3073-byte
    records. Returns (images uint8 [N, 3, 32, 32], labels int64 [N])."""
    data = np.frombuffer(_open_bytes(Path(path)), dtype=np.uint8)
    if data.size == 0 or data.size % CIFAR_RECORD:
        raise DataError(f"{path}: not a CIFAR-10 binary batch ({data.size} bytes is not a whole number of "
                        f"{CIFAR_RECORD}-byte records; truncated or another file)")
    records = data.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: not a CIFAR-10 binary batch (label {labels.max()} outside 0..9)")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels
