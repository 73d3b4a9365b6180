"""``genzoo verify [NAME ...]``: re-evaluate shipped models on their full test sets and fail (exit 1)
if a figure leaves its recipe's tolerance; ``--write-card`` then (re)writes each model card.

A model card (README.md in the shipped folder) is generated from the recipe (genzoo.recipes) and
the folder's own records: the data and its protocol, the estimator and its K, the figure with its
tolerance, the sample quality where measured, the parameters, the training time and machine, and
the ``genzoo reproduce`` line. The suite checks that every shipped card is what this writes.
"""

from __future__ import annotations

import json
import time

from .. import checkpoint as ckpt
from .. import recipes, runs
from ..errors import GenzooError
from ..evaluation.figures import bound_mark
from ..likelihood import bits_per_dim
from . import COMMANDS, evaluate
from .common import add_device_options, apply_device_options, checked_split, number, parse_command

CARD_FILE = "README.md"


def add_parsers(sub, argv) -> None:
    v = sub.add_parser("verify", help=COMMANDS["verify"][1])
    v.add_argument("names", nargs="*", metavar="NAME",
                   help=f"shipped models (default: all): {', '.join(recipes.names())}")
    v.add_argument("--limit", type=number(int, 1),
                   help="score a seeded subset of N test images only (a smoke test: not compared with the figure)")
    v.add_argument("--write-card", action="store_true", help="write each verified model's card (README.md) in its "
                                                             "folder")
    v.add_argument("--json", action="store_true", help="one JSON object per model")
    add_device_options(v)
    v.set_defaults(run=run_verify)


def _shipped(names: list[str]) -> list[tuple[recipes.Recipe, object]]:
    out = []
    for name in names or recipes.names():
        recipe, folder = recipes.get(name), recipes.pretrained_root() / name
        if not (folder / runs.RUN_FILE).is_file():
            raise GenzooError(f"{name}: not shipped here ({folder} holds no run folder)")
        out.append((recipe, folder))
    return out


def _measure(recipe: recipes.Recipe, folder, limit, device) -> dict:
    """The recipe's evaluation of the shipped folder, not kept in it (a shipped folder is not written)."""
    args = parse_command(evaluate, recipe.eval_argv(folder) + (["--limit", str(limit)] if limit else []))
    run = runs.open_run(folder, need_record=True)
    ds = checked_split(run, args, "test")
    start = time.perf_counter()
    result, _ = evaluate.measure(args, run, ds, device)
    return {**result, "seconds": time.perf_counter() - start}


def run_verify(args) -> int:
    device = apply_device_options(args)
    shipped = _shipped(args.names)  # every name checked before any evaluation
    failed = 0
    for recipe, folder in shipped:
        got = _measure(recipe, folder, args.limit, device)
        off = got["nll_nats"] - recipe.figure
        verdict = "smoke test (a subset)" if args.limit else ("ok" if abs(off) <= recipe.tolerance else "MOVED")
        failed += verdict == "MOVED"
        if args.json:
            print(json.dumps({"name": recipe.name, "nll_nats": got["nll_nats"], "shipped": recipe.figure,
                              "tolerance": recipe.tolerance, "count": got["count"], "verdict": verdict,
                              "seconds": round(got["seconds"], 1)}), flush=True)
        else:
            print(f"{recipe.name}: {got['nll_nats']:.3f} nats/image on {got['count']} test images "
                  f"(shipped {recipe.figure:.3f} +- {recipe.tolerance}, {off:+.4f}): {verdict} "
                  f"[{got['seconds']:.0f} s]",
                  flush=True)
        if args.write_card and verdict == "ok":
            ckpt.atomic_write_bytes(folder / CARD_FILE, model_card(recipe, folder).encode())
    return 1 if failed else 0


def _quality_line(evals: list) -> str:
    quality = [e for e in evals if "quality" in e]
    if not quality:
        return "not measured"
    q = quality[-1]["quality"]
    sampler = "".join(f" --{k}" if v is True else f" --{k} {v}" for k, v in q.get("sampler", {}).items())
    return (f"FID {q['fid']:.3f} (held-out floor {q['floor']['fid']:.3f}), precision {q['precision']:.3f}, "
            f"recall {q['recall']:.3f}, {q['fid_n']} samples in genzoo's {q['feature_network']['kind']} features "
            f"(`genzoo eval {{folder}} --fid {q['fid_n']}{sampler}`)")


def training_words(metrics: list, train: dict) -> str:
    """How far training went: whole epochs, the steps of an epoch the time budget cut, and how much of the planned
    schedule that was (a card once said "3 epochs" for 2 epochs and 107 steps of a cosine cut at 42%)."""
    if not metrics:
        return "no epochs recorded"
    last, whole = metrics[-1], [m for m in metrics if not m.get("partial")]
    done = whole[-1] if whole else {"epoch": 0, "step": 0}
    text = f"{done['epoch']} epoch{'' if done['epoch'] == 1 else 's'}"
    if last.get("partial"):
        text += f" + {last['step'] - done['step']:,} steps of epoch {last['epoch']}"
    per_epoch = whole[0]["step"] / whole[0]["epoch"] if whole else 0
    fitted = [m["schedule_steps"] for m in metrics if "schedule_steps" in m]  # --fit-cosine's length, when fitted
    planned = fitted[-1] if fitted else round(per_epoch * train.get("epochs", 0))
    text += f" ({last['step']:,} steps"
    if planned and last["step"] < planned:
        text += (f"; the time budget stopped the {train.get('epochs')}-epoch, {planned:,}-step schedule at "
                 f"{100 * last['step'] / planned:.0f}%")
    return text + ")"


def model_card(recipe: recipes.Recipe, folder) -> str:
    """The shipped folder's README.md, from its recipe and its records (run.json, config.json, evals.jsonl)."""
    run = runs.open_run(folder, need_record=True)
    model, dims = run.model, run.model.dims
    kind = model.likelihood_kind
    estimator = {"exact": "exact -log P(x)", "bound": "an upper bound on -log P(x)"}[kind]
    estimator += model.estimator_words(recipe.evaluate)
    sign = bound_mark(kind)
    metrics = run.metrics
    options = ", ".join(f"{k} {v}" for k, v in runs.model_record(folder)["config"].items())
    lines = [
        f"# {recipe.name}",
        "",
        f"A `{model.name}` trained by genzoo. Paper: {recipe.paper}.",
        "",
        "| | |",
        "| --- | --- |",
        f"| data | {recipe.protocol} |",
        f"| figure (full test set) | **{sign}{recipe.figure:.3f} nats/image = {bits_per_dim(recipe.figure, dims):.4f} "
        f"bits/dim**, {estimator} |",
        f"| tolerance | `genzoo verify {recipe.name}` fails if a re-evaluation lands more than {recipe.tolerance} "
        f"nats from the figure |",
        f"| sample quality | {_quality_line(runs.read_evals(folder)).replace('{folder}', recipe.name)} |",
        f"| parameters | {run.parameters:,} |",
        f"| config | {options} |",
        f"| training | {training_words(metrics, run.record.get('train', {}))}, {recipe.training_minutes} min on "
        f"{recipe.machine} |",
        "",
        "Reproduce (the recipe lives in `genzoo/recipes.py`):",
        "",
        "```bash",
        f"genzoo reproduce {recipe.name}          # = {recipe.command()}",
        f"genzoo verify {recipe.name}             # re-scores this folder on the full test set",
        "```",
        "",
        "This card is generated by `genzoo verify --write-card`; edit the recipe, not the card.",
        "",
    ]
    return "\n".join(lines)
