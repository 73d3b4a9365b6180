"""``genzoo reproduce NAME``: train a shipped model's recipe (genzoo.recipes) into a run folder and
measure it as the shipped figure was measured.

    genzoo reproduce row-lstm-binarized-mnist --out runs/again              # the whole recipe (about an hour)
    genzoo reproduce NAME --minutes 1                                      # the recipe for one minute
"""

from __future__ import annotations

from pathlib import Path

from .. import recipes
from . import COMMANDS, evaluate, train
from .common import number, run_command

# torch.compile's first steps take 10-40 s on 2 CPU cores (docs/RESULTS.md, "Training speed"): most of a shorter
# budget would go to compiling (a 0.3-minute NADE once trained 3 steps), so a budget under this leaves it out
SHORT_FOR_COMPILE = 1.0


def add_parsers(sub, argv) -> None:
    r = sub.add_parser("reproduce", help=COMMANDS["reproduce"][1])
    r.add_argument("name", metavar="NAME", help=f"a shipped model: {', '.join(recipes.names())}")
    r.add_argument("--out", metavar="DIR", help="new run folder (default runs/NAME)")
    r.add_argument("--minutes", type=number(float, 0, low_open=True),
                   help="wall-clock budget instead of the recipe's (the cosine still spans the recipe's epochs); "
                        f"under {SHORT_FOR_COMPILE:g} it leaves out the recipe's --compile, which would spend it "
                        "compiling; default the recipe's")
    r.add_argument("--epochs", type=number(int, 1), help="epochs instead of the recipe's (the cosine spans these)")
    r.add_argument("--train-limit", type=number(int, 1),
                   help="train on a fixed, seeded subset of N training images (a smoke test of the recipe)")
    r.add_argument("--eval-limit", type=number(int, 1),
                   help="score each epoch and the final figure on a seeded subset of N test images (default: the "
                        "recipe's per-epoch subset, the full test set at the end)")
    r.add_argument("--no-compile", action="store_true", help="leave out torch.compile where the recipe uses it")
    r.add_argument("--data-dir", help="where to look for the data files first (e.g. a copy travelling with the "
                                      "checkout)")
    r.add_argument("--no-eval", action="store_true", help="train only; skip the final evaluation")
    r.add_argument("--print", action="store_true", help="print the genzoo train line and do nothing")
    r.set_defaults(run=run_reproduce)


def _overrides(args) -> dict:
    given = {"minutes": args.minutes, "epochs": args.epochs, "train_limit": args.train_limit,
             "eval_limit": args.eval_limit}
    out = {k: v for k, v in given.items() if v is not None}
    if args.no_compile or (args.minutes is not None and args.minutes < SHORT_FOR_COMPILE):
        out["compile"] = False
    return out


def run_reproduce(args) -> int:
    recipe = recipes.get(args.name)
    out = Path(args.out or f"runs/{recipe.name}")
    overrides = _overrides(args)
    where = ["--data-dir", args.data_dir] if args.data_dir else []
    argv = recipe.train_argv(out, **overrides) + where
    if args.print:
        print("genzoo " + " ".join(argv))
        return 0
    changed = ", ".join(f"{k}={v}" for k, v in overrides.items())
    print(f"reproduce {recipe.name}: genzoo {' '.join(argv)}" + (f"  (the recipe with {changed})" if changed else ""),
          flush=True)
    status = run_command(train, argv)
    if status or args.no_eval:
        return status
    limit = ["--limit", str(args.eval_limit)] if args.eval_limit else []
    status = run_command(evaluate, recipe.eval_argv(out) + limit + where)
    if not status:
        print(f"reproduce {recipe.name}: the shipped figure is {recipe.figure:.3f} nats/image on the full test set "
              f"({recipe.training_minutes:.0f} min of training on {recipe.machine})")
    return status

