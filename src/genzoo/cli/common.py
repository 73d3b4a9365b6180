"""What every command shares: one-line argument errors, number and choice types, the device
options, and opening a run with the test split it was trained on."""

from __future__ import annotations

import argparse
import math

import torch

from .. import data, runs
from ..errors import GenzooError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line and exit status 2."""

    def error(self, message):
        where = self.prog.removeprefix("genzoo").strip()
        raise GenzooError(f"{where}: {message}" if where else message)


def number(kind, low=None, high=None, low_open=False):
    """An argparse type: an int or a finite float, within [low, high] (or (low, high] with low_open)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (v <= low if low_open else v < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {text}")
        if high is not None and v > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
        return v
    parse.__name__ = kind.__name__
    return parse


def choice(options):
    def parse(text):
        if text not in options:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(options)}, got {text!r}")
        return text
    parse.__name__ = "choice"
    return parse


def add_device_options(p) -> None:
    p.add_argument("--threads", type=number(int, 1), help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")


def add_data_options(p) -> None:
    p.add_argument("--data", help="dataset (default: the run's)")
    p.add_argument("--data-dir")


def device(name) -> torch.device:
    try:
        dev = torch.device(name) if name else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except RuntimeError:
        raise GenzooError(f"bad --device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenzooError("--device cuda: no CUDA device here")
    return dev


def apply_device_options(args) -> torch.device:
    """--threads takes effect; --device is checked and returned."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return device(getattr(args, "device", None))


def spec_of(run: runs.Run, args) -> dict:
    """The data recipe for this command: the run's, or --data / --data-dir."""
    return runs.data_spec(run.record, getattr(args, "data", None), getattr(args, "data_dir", None))


def checked_split(run: runs.Run, args, split: str = "test") -> data.Dataset:
    """A split of the run's data (as --data / --data-dir say), checked to fit its model."""
    ds, levels, _ = data.prepare(spec_of(run, args), split)
    data.check_fits(run.model, ds, levels)
    return ds


def latent_run(args, what: str) -> runs.Run:
    """The run in args.dir, whose model must have a code (encode / decode) to ``what``."""
    run = runs.open_run(args.dir)
    if not run.model.has_code:
        raise GenzooError(f"{run.model.name} has no code to {what} (autoencoders, the VAE and flows do)")
    return run
