"""The forward pass's numeric precision: fp32, or bf16 autocast where the hardware runs it.

Under bf16 the convolutions and matrix products run in bfloat16 while the weights, gradients
and Adam moments stay fp32 (autocast casts copies); likelihood reductions opt out
(``likelihood.full_precision``), so reported nats stay fp32 figures.
"""

from __future__ import annotations

import sys

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """The precision context of a forward pass: bf16 autocast, or nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` run bf16 natively (a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def warn_if_emulated(precision: str, device: torch.device) -> None:
    """A note on stderr when bf16 is asked for on a CPU that only emulates it."""
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        print("genzoo: note: this CPU has no native bf16 (AVX512-BF16 or AMX): --precision bf16 is emulated "
              "here and slower than fp32", file=sys.stderr, flush=True)
