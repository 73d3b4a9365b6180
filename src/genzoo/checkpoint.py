"""Durable file I/O below everything else: atomic writes, JSON, safetensors weights, trainer state.

Knows nothing about models (the model folder, config.json + model.safetensors, lives in
``models/folder.py`` beside the registry) or runs (``runs.py``); it names no file. Weights
are only ever read from safetensors, so loading weights never unpickles anything.

Trainer state (optimizer moments, step, RNG states) is written with ``torch.save`` and
read back only with ``torch.load(weights_only=True)``, which refuses any pickle that
would construct an arbitrary object.

Every write goes to a temporary file in the same folder, is flushed and fsynced, and
then renamed over the target, so a kill or a full disk leaves either the old file or
the new one, never a torn one.

torch and safetensors are imported by the functions that read or write tensors only: a listing of run folders
(``genzoo runs``) reads JSON and safetensors headers, and starts in a fraction of torch's import time.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

from .errors import CheckpointError

if TYPE_CHECKING:
    import torch


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private (0600)


_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"  # a write in progress: ".<name>.<random>.tmp" beside its target


def _write_error(path, e: OSError) -> CheckpointError:
    """A full disk or a read-only folder: the user's to fix, not a bug."""
    return CheckpointError(f"cannot write {path}: {e.strerror or e} (the previous file, if any, is intact)")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=_TEMP_SUFFIX)
    except OSError as e:  # a missing, read-only or special (/proc, /sys) folder
        raise _write_error(path, e) from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def check_writable(path) -> None:
    """Can a file be written at ``path`` the way :func:`atomic_write_bytes` writes it? Tried for
    real (a temp file created and removed beside it), so a read-only mount, /proc or /sys, a
    missing folder or a path under a file all fail here, before any work, with one line."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a file")
    if path.is_file() and not path.stat().st_mode & 0o222:  # mode bits, not os.access: root may write anything
        raise CheckpointError(f"{path}: is read-only; genzoo does not replace a file protected from writing "
                              f"(make it writable, or name another file)")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=_TEMP_SUFFIX)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror or e}") from None


def append_line(path, line: str) -> None:
    """Append one line and fsync it. A kill may tear the last line; readers skip a torn line."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _write_error(path, e) from None


def sweep_temp_files(folder) -> None:
    """Delete what killed atomic writes left in ``folder``; no reader ever opens these."""
    for stray in Path(folder).glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
        stray.unlink(missing_ok=True)


def create_folder(path, files: dict[str, bytes]) -> None:
    """Create the folder ``path`` holding ``files`` ({name: bytes}), all or nothing.

    The files are written into a temporary sibling folder that is then renamed to ``path``
    (rename(2) also replaces an empty folder), so a kill or a failed write leaves either no
    folder (or the empty one that was there) or the complete one. Parent folders this call
    had to create are removed again on failure.
    """
    path = Path(path)
    created = next((p for p in reversed(path.parents) if not p.exists()), None)  # the topmost missing parent
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=_TEMP_SUFFIX))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        os.rename(tmp, path)
    except BaseException as e:
        for leftover in (tmp, created):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def read_json(path) -> dict:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid JSON file ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return obj


def save_weights(path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save as st_save_bytes

    data = st_save_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    atomic_write_bytes(path, data)


def load_weights(path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load_bytes

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return st_load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt: {e})") from None


def check_weights_file(path) -> None:
    """A safetensors file whose header parses and whose tensor data is all there, checked without
    loading the tensors (for listings of many runs); one CheckpointError saying what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n < 2 or n > 100_000_000:
                raise ValueError("no safetensors header")
            if n > size - 8:
                raise CheckpointError(f"{path}: truncated ({size:,} bytes, its header alone is {8 + n:,})")
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    if 8 + n + end > size:
        raise CheckpointError(f"{path}: truncated ({size:,} of {8 + n + end:,} bytes)")


def load_state_into(model, tensors: dict, where) -> None:
    import torch

    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{where}: weights do not match the {getattr(model, 'name', type(model).__name__)} config "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''})"
        )
    for k, v in tensors.items():
        if v.shape != own[k].shape:
            raise CheckpointError(f"{where}: tensor {k} has shape {tuple(v.shape)}, the config needs "
                                  f"{tuple(own[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{where}: tensor {k} holds NaN or inf")
    model.load_state_dict(tensors, strict=True)


def save_trainer_state(path, state: dict) -> None:
    """``state`` holds only tensors, numbers, strings and containers of them."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _gist(e: Exception, limit: int = 200) -> str:
    """The first sentence of an exception's message, whole (never cut mid-sentence), at most ``limit`` characters."""
    text = str(e).strip().splitlines()[0].strip() if str(e).strip() else type(e).__name__
    if len(text) <= limit:
        return text.rstrip(".")
    end = text.rfind(". ", 0, limit)
    return text[:end] if end > 0 else text[:text.rfind(" ", 0, limit)] + " ..."


def load_trainer_state(path) -> dict:
    import torch

    path = Path(path)
    try:
        # weights_only=True: the restricted unpickler; anything but tensors and plain containers is refused.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for a bad file
        raise CheckpointError(f"{path}: refused as trainer state (not a plain tensor checkpoint: {_gist(e)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: trainer state must be a dict")
    return state
