"""The forward pass's numeric precision: fp32, or bf16 autocast where the hardware runs it.

Under bf16 the convolutions and matrix products run in bfloat16 while the weights, gradients
and Adam moments stay fp32 (autocast casts copies); likelihood reductions opt out
(``likelihood.full_precision``), so reported nats stay fp32 figures.
"""

from __future__ import annotations

import os
import sys

import torch

from ..errors import GenzooError

PRECISIONS = ("fp32", "bf16")  # what a forward pass runs in
TRAIN_PRECISIONS = ("auto", *PRECISIONS)  # what may be asked for: auto = bf16 where native, else fp32


def autocast(device: torch.device, precision: str):
    """The precision context of a forward pass: bf16 autocast, or nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` run bf16 natively (a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX)?

    ``GENZOO_NATIVE_BF16=0`` or ``=1`` overrides the detection (the test suite sets 0, so that its
    figures do not depend on which CPU runs it)."""
    override = os.environ.get("GENZOO_NATIVE_BF16")
    if override is not None:
        if override not in ("0", "1"):  # "yes" was silently ignored
            raise GenzooError(f"GENZOO_NATIVE_BF16={override!r}: set it to 0 or 1 (or unset it to detect)")
        return override == "1"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve(precision: str, device: torch.device) -> str:
    """The precision a run really uses: ``auto`` becomes bf16 where ``device`` runs it natively, else fp32
    (RESULTS.md: native bf16 trains 1.9-5x faster at no cost in likelihood; emulated bf16 is 8-10x slower)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def describe(requested: str, resolved: str, device: torch.device) -> str:
    """How the precision was chosen, for the line every run starts with."""
    if requested != "auto":
        return resolved
    why = "native bf16 here" if resolved == "bf16" else f"no native bf16 on this {device.type.upper()}"
    return f"{resolved} (auto: {why})"


def warn_if_emulated(precision: str, device: torch.device) -> None:
    """A note on stderr when bf16 is asked for on a CPU that only emulates it."""
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        print("genzoo: note: this CPU has no native bf16 (AVX512-BF16 or AMX): --precision bf16 is emulated "
              "here and slower than fp32", file=sys.stderr, flush=True)
