"""The ``genzoo`` command line: one module per command family, each with its parsers beside
its handlers (``add_parsers(sub, argv)`` registers the commands, each parser's ``run`` default
is its handler).

    genzoo list
    genzoo train MODEL --data NAME --out DIR [options]    |   genzoo train --resume DIR
    genzoo eval DIR          genzoo probe DIR
    genzoo sample DIR -n N -o FILE.png      genzoo complete DIR -o FILE.png
    genzoo interpolate DIR -o FILE.png      genzoo reconstruct DIR -o FILE.png
    genzoo report DIR... -o FILE.html       genzoo toy nice|realnvp --data moons -o FILE.png
    genzoo reproduce NAME [--minutes M]     genzoo verify [NAME ...]
    genzoo race --data NAME --minutes M --out DIR [--models a,b|FAMILY|all]

A bad argument, a missing run folder or a bad file prints one line on stderr and exits
with status 2; nothing already written is touched. Under ``torchrun`` the train command
runs DistributedDataParallel (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .. import __version__, catalog
from ..errors import GenzooError
from .parsing import named_model

# Every command, in the order genzoo --help lists them: the module of genzoo.cli that owns it (its parser and handler)
# and its line of help. Only the module of the command given is imported (most import torch, 1.3 s of start-up on
# 2 cores); the others stand in the help as their line, so genzoo --help and genzoo runs start without torch.
COMMANDS = {
    "list": ("listing", "models (with the kind of likelihood each states) and datasets"),
    "runs": ("listing", "the run folders under DIR: model, data, steps, wall time, the test figure (as list and "
                        "report show it)"),
    "train": ("train", "train a model; writes a run folder"),
    "reproduce": ("reproduce", "train a shipped model's recipe into a run folder, then evaluate it as shipped"),
    "eval": ("evaluate", "test NLL of runs or saved models (reconstruction error for autoencoders)"),
    "probe": ("evaluate", "logistic regression on frozen codes vs raw pixels, PCA, random projection"),
    "verify": ("verify", "re-evaluate the shipped models on their full test sets; exit 1 if a figure moved"),
    "sample": ("pictures", "draw samples into a PNG grid"),
    "complete": ("pictures", "complete the lower part of test images (models that can complete)"),
    "interpolate": ("pictures", "decode the path between two test images' codes (models with encode)"),
    "reconstruct": ("pictures", "test images beside their reconstructions (models with encode and decode)"),
    "report": ("reporting", "one self-contained HTML page comparing run folders (nothing is retrained)"),
    "race": ("race", "train every chosen model on equal terms (data, minutes, threads) and write the leaderboard "
                     "(race.json, race.md, report.html)"),
    "toy": ("toy", "train a 2-D flow in seconds and plot data, density and samples"),
}

EXAMPLE_MODEL = catalog.names()[1]  # a model of the registry's, not a name written here
EXAMPLES = f"""examples:
  genzoo list                                                   the models and datasets
  genzoo train {EXAMPLE_MODEL} --data digits --out runs/g --epochs 10
  genzoo eval runs/g                                            test NLL: nats/image, bits/dim, exact or bound
  genzoo sample runs/g -n 64 -o samples.png
  genzoo runs runs                                              every run under runs/, with its best figure
  genzoo report runs -o report.html                             one page comparing them
  genzoo sample row-lstm-binarized-mnist -n 16 -o s.png         a shipped model, by name
  genzoo verify                                                 re-score the shipped models on their test sets
  genzoo COMMAND --help                                         a command's options, defaults and limits"""


def build_parser(argv) -> argparse.ArgumentParser:
    """The parser of genzoo with the whole parser of the command in ``argv`` (of every command of its module); the
    other commands are their help line only."""
    from .parsing import Parser

    parser = Parser(prog="genzoo", description="Deep generative models of images on one likelihood scale.",
                    epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND",
                                help="one of the commands below; genzoo COMMAND --help tells its options")
    given = next((a for a in argv if not a.startswith("-")), None)  # genzoo takes no option with a value
    wanted = COMMANDS[given][0] if given in COMMANDS else None
    shaped = _help_shape(given, argv)
    added = False
    for name, (module, text) in COMMANDS.items():
        if name == given and shaped is not None:
            from .helpshape import add_parser

            add_parser(sub, name, text, *shaped)
        elif module != wanted or shaped is not None:
            sub.add_parser(name, help=text)
        elif not added:  # the module's first command: the module adds all of its commands
            importlib.import_module(f".{module}", __name__).add_parsers(sub, argv)
            added = True
    return parser


def _help_shape(given, argv) -> tuple[dict, dict | None] | None:
    """``genzoo COMMAND ... --help``: the command's shape in help.json (cli/helpshape.py) and the named model's
    options, to rebuild its parser without importing its module; None where it is not help, or the file or the model
    named is unknown."""
    from . import helpshape

    shapes = helpshape.load() if given in COMMANDS and helpshape.asks_help(argv) else None
    if shapes is None or given not in shapes["commands"]:
        return None
    command, added = shapes["commands"][given], None
    if given == "train" and argv[:1] == ["train"]:
        named = named_model(helpshape.no_value_flags(command), argv[1:], catalog.names())
        if named is not None and named not in shapes["train_models"]:
            return None
        added = shapes["train_models"].get(named)
    return command, added


def help_shapes() -> dict:
    """help.json as the parsers say it is now (imports every command and model): ``make catalog`` writes it."""
    from . import helpshape

    commands = {name: helpshape.shape(_subparser(build_parser([name]), name)) for name in COMMANDS}
    models = {m: helpshape.extra(commands["train"], helpshape.shape(_subparser(build_parser(["train", m]), "train")))
              for m in catalog.names()}
    return {"commands": commands, "train_models": models}


def write_help_shapes() -> None:
    from . import helpshape

    helpshape.SHAPES_FILE.write_text(json.dumps(help_shapes(), indent=0) + "\n")
    print(f"wrote {helpshape.SHAPES_FILE}")


def _subparser(parser, name: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices[name]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # bare `genzoo`: what there is to do, and how
        build_parser(argv).print_help()
        return 0
    args = None
    try:
        args = build_parser(argv).parse_args(argv)
        return args.run(args)
    except GenzooError as e:
        print(f"genzoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genzoo: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _resume_hint(args) -> str:
    """What to say after Ctrl-C: how to continue, only where there is a run folder to continue."""
    if args is None or args.command not in ("train", "reproduce"):
        return ""
    folder = getattr(args, "resume", None) or args.out or (f"runs/{args.name}" if args.command == "reproduce" else None)
    from .. import runs

    if folder and (Path(folder) / runs.RUN_FILE).is_file():
        return f" (the run continues with: genzoo train --resume {folder})"
    return " (no run folder was made yet)"
