"""What every command shares: one-line argument errors, number and choice types, the device
options, and opening a run with the test split it was trained on."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

import torch

from ..evaluation import figures
from .. import data, models, runs
from ..errors import GenzooError
from .parsing import Parser


def parse_command(family, argv: list[str]) -> argparse.Namespace:
    """The arguments of one command of a CLI module (``family.add_parsers``), parsed as ``genzoo`` would:
    for a command that runs another (``reproduce`` runs ``train`` and ``eval``) with its exact flags."""
    parser = Parser(prog="genzoo")
    family.add_parsers(parser.add_subparsers(dest="command", required=True, parser_class=Parser), argv)
    return parser.parse_args(argv)


def run_command(family, argv: list[str]) -> int:
    args = parse_command(family, argv)
    return args.run(args)


def number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: an int or a finite float, within [low, high] (either end open with low_open, high_open)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got "
                                             f"{text!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (v <= low if low_open else v < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {text}")
        if high is not None and (v >= high if high_open else v > high):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high}, got {text}")
        return v
    parse.__name__ = kind.__name__
    bounds = [f"{'>' if low_open else '>='} {low}" if low is not None else "", f"<= {high}" if high is not None else ""]
    parse.limits = " and ".join(b for b in bounds if b)  # shown in --help
    return parse


SEED_MAX = 2**63 - 1  # what torch.Generator.manual_seed and numpy accept everywhere
SEED = number(int, 0, SEED_MAX)


def choice(options):
    def parse(text):
        if text not in options:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(options)}, got {text!r}")
        return text
    parse.__name__ = "choice"
    parse.choices = tuple(options)  # shown in --help
    return parse


RUN_HELP = "a run folder written by genzoo train (or a saved model folder: config.json + model.safetensors)"


def add_run_dir(p, several: bool = False) -> None:
    if several:
        p.add_argument("dirs", nargs="+", metavar="DIR", help=RUN_HELP + "; several may be named")
    else:
        p.add_argument("dir", metavar="DIR", help=RUN_HELP)
    p.add_argument("--no-ema", action="store_true",
                   help="a run trained with --ema: its raw weights (default: the moving average of the weights)")


def open_run(args, folder, need_record: bool = False) -> runs.Run:
    """The run in ``folder`` as the command's options say (--no-ema), saying in one line (stderr) when the
    weights are a moving average."""
    run = runs.open_run(folder, need_record, ema=not getattr(args, "no_ema", False))
    if getattr(run.model, "weights", "raw") == "ema":
        print(f"genzoo: {folder}: the moving average of the weights (--no-ema for the raw ones)", file=sys.stderr,
              flush=True)
    return run


def add_output(p, suffix: str = ".png") -> None:
    p.add_argument("-o", "--output", required=True, metavar=f"FILE{suffix}",
                   help=f"the {suffix} file to write (checked writable before any work)")


def add_seed(p, what: str = "the random draws") -> None:
    p.add_argument("--seed", type=SEED, default=0, help=f"seed of {what}")


# More CPU threads than this only oversubscribe the cores; far more crashed OpenMP (100,000 threads:
# "can't start new thread", then a segmentation fault), so the limit is stated and checked.
MAX_THREADS = 4 * (os.cpu_count() or 1)


def add_device_options(p) -> None:
    p.add_argument("--threads", type=number(int, 1, MAX_THREADS),
                   help="torch CPU threads, at most 4 x the CPUs here (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")


def add_data_options(p, use: str = "score the model on") -> None:
    p.add_argument("--data", help=f"{use} this dataset instead, prepared as the run's data (default: the run's "
                                  f"dataset)")
    p.add_argument("--data-dir", help="where to look for data files first (default: the run's, then the usual places)")


def device(name) -> torch.device:
    try:
        dev = torch.device(name) if name else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except RuntimeError:
        raise GenzooError(f"bad --device {name!r}") from None
    if dev.type not in ("cpu", "cuda"):  # meta, mps, xla ...: no tensor computed there gives images or nats here
        raise GenzooError(f"--device {name}: genzoo runs on cpu or cuda[:N]")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenzooError("--device cuda: no CUDA device here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise GenzooError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
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
    """A split of the run's data (as --data / --data-dir say), checked to fit its model; on the run's
    own data, a note (one line on stderr) when it differs from what the run was launched on."""
    spec = spec_of(run, args)
    own = not getattr(args, "data", None)
    if own:
        where_now(run, spec)
    ds = data.fitted_split(run.model, spec, split)
    # a folder given by --data to a run trained on a folder is most likely the run's pictures moved: compare it too
    moved = not own and all(data.imagefolder.is_folder_name(str(s.get("name", ""))) for s in (spec, run.record["data"]))
    recorded = (own or moved) and "data_fingerprint" in run.record  # runs from before fingerprints have none
    changed = figures.data_changed(run.record, split, data.fingerprint(ds)) if recorded else None
    if changed:
        where = f" (in {spec['name']}, given by --data)" if moved else ""
        print(f"genzoo: note: {changed}{where}: the figures are of the data as it is now", file=sys.stderr,
              flush=True)
    return ds


def where_now(run: runs.Run, spec: dict) -> None:
    """A run trained on a folder of pictures that is no longer there: say where it was and how to point
    the run at its new place (the error used to name a --data the user never gave)."""
    name = spec.get("name", "")
    if data.imagefolder.is_folder_name(name) and not Path(name).exists():
        raise GenzooError(f"{run.name} was trained on the folder {name}, which is not there now; if it moved, "
                          f"--data NEW_PLACE points the run at it (genzoo train --resume {run.name} --data NEW_PLACE "
                          f"to train on)")


def renamed(new: str):
    """An argparse action for an option's old name: it sets the new one's value and says the new name, once."""
    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"genzoo: note: {option_string} is now {new}", file=sys.stderr, flush=True)
            setattr(namespace, self.dest, values)
    return Renamed


def able(capability: str) -> str:
    """The registered models that declare ``capability`` (e.g. "has_code"), for a refusal to name them."""
    return ", ".join(n for n in models.names() if getattr(models.get(n), capability))


def latent_run(args, what: str) -> runs.Run:
    """The run in args.dir, whose model must have a code (encode / decode) to ``what``."""
    run = open_run(args, args.dir)
    if not run.model.has_code:
        coder = ""  # a prior of another model's codes: that model has one, and the command is the same
        if (run.folder / models.folder.CODES_OF_FILE).is_file():
            coder = (f"; the model whose codes it models has one: genzoo {getattr(args, 'command', what.split()[0])} "
                     f"{models.folder.codes_source(run.folder)}")
        raise GenzooError(f"{run.model.name} has no code to {what} (these models have one: {able('has_code')}){coder}")
    return run


def add_model_options(p, kind: str, title: str) -> None:
    """One flag per option of ``kind`` ("SampleOptions" or "EvalOptions") that a registered model declares, its help
    the model's own words and the models that take it; a model refuses one it does not declare (model_options)."""
    group = p.add_argument_group(title)
    for o in models.run_options(kind).values():
        flag = "--" + o.name.replace("_", "-")
        text = f"{o.help}; taken by {', '.join(o.models)}".replace("%", "%%")
        if o.kind is bool:
            group.add_argument(flag, action="store_true", default=None, help=text)
        elif o.choices:
            group.add_argument(flag, type=choice(o.choices), default=None, metavar="{" + ",".join(o.choices) + "}",
                               help=text)
        else:
            group.add_argument(flag, type=number(o.kind, *o.limits, low_open=o.low_open), default=None,
                               metavar=o.kind.__name__.upper(), help=text)


def model_options(model, args, kind: str) -> dict:
    """The options of ``kind`` given on the command line, checked against ``model``: one it does not declare is
    refused in one line naming the models that do; the model's Options class checks the values together."""
    declared = {f.name for f in dataclasses.fields(getattr(model, kind))}
    given = {}
    for name, option in models.run_options(kind).items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in declared:
            raise GenzooError(f"--{name.replace('_', '-')}: {model.name} takes no such option (taken by "
                              f"{', '.join(option.models)})")
        given[name] = value
    getattr(model, kind)(**given)
    return given


def sampling_options(model, args) -> dict:
    """The sampling options given (sample, complete, eval --fid), checked against the model; its sample() defaults
    stand for the others."""
    return model_options(model, args, "SampleOptions")


def eval_options(model, args) -> dict:
    """Every estimator option of the model (eval): those given, checked, and the model's defaults."""
    return dataclasses.asdict(model.EvalOptions(**model_options(model, args, "EvalOptions")))


def given_options(args, kind: str) -> list[str]:
    """The flags of ``kind`` options given on the command line, whatever the model."""
    return ["--" + n.replace("_", "-") for n in models.run_options(kind) if getattr(args, n, None) is not None]
