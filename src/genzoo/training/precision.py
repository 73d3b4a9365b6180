"""The forward pass's numeric precision: fp32, or bf16 autocast where the hardware runs it.

Under bf16 the convolutions and matrix products run in bfloat16 while the weights, gradients
and Adam moments stay fp32 (autocast casts copies); likelihood reductions opt out
(``likelihood.full_precision``), so reported nats stay fp32 figures.
"""

from __future__ import annotations

import copy
import os
import sys
import time

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


def step_seconds(model, x, y, device: torch.device, precision: str, steps: int = 3) -> float:
    """The median seconds of ``steps`` training passes (forward and backward, no update) of ``model`` on the batch
    (x, y) in ``precision``, after one pass of warm-up."""
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with autocast(device, precision):
            loss = model.loss(x, y)["loss"]
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measured(model, x, y, device: torch.device) -> tuple[str, dict]:
    """--precision auto where bf16 is native: a few timed training passes of a copy of the model in each precision
    on one batch (native bf16 was 0.78-0.88x fp32's speed for NADE on an AMX Xeon, 1.2-1.75x for others: it is
    measured, not assumed). Returns the faster and the seconds of each; the random state is left as it was, so
    the run trains as it would have without the measurement."""
    state = torch.get_rng_state()
    try:
        probe = copy.deepcopy(model).to(device).train()
        seconds = {p: step_seconds(probe, x.to(device), None if y is None else y.to(device), device, p)
                   for p in PRECISIONS}
    finally:
        torch.set_rng_state(state)
    return min(PRECISIONS, key=lambda p: seconds[p]), seconds


def describe(requested: str, resolved: str, device: torch.device, seconds: dict | None = None) -> str:
    """How the precision was chosen, for the line every run starts with."""
    if requested != "auto":
        return resolved
    if seconds:
        speed = seconds["fp32"] / seconds["bf16"]
        return f"{resolved} (auto: native bf16 here, measured {speed:.2f}x fp32's training speed on this model)"
    why = "native bf16 here" if resolved == "bf16" else f"no native bf16 on this {device.type.upper()}"
    return f"{resolved} (auto: {why})"


def warn_if_emulated(precision: str, device: torch.device) -> None:
    """A note on stderr when bf16 is asked for on a CPU that only emulates it."""
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        print("genzoo: note: this CPU has no native bf16 (AVX512-BF16 or AMX): --precision bf16 is emulated "
              "here and slower than fp32", file=sys.stderr, flush=True)
