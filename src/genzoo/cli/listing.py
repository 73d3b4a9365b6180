"""``genzoo list`` (the models and datasets) and ``genzoo runs DIR`` (the run folders under DIR)."""

from __future__ import annotations

import json

from .. import catalog, recipes, runs
from ..errors import GenzooError
from ..evaluation import figures
from ..evaluation.figures import bound_mark
from . import COMMANDS


def add_parsers(sub, argv) -> None:
    p = sub.add_parser("list", help=COMMANDS["list"][1])
    p.add_argument("--json", action="store_true", help="print one JSON object: models with their options (defaults and "
                                                       "meaning), datasets")
    p.set_defaults(run=run_list)
    r = sub.add_parser("runs", help=COMMANDS["runs"][1])
    r.add_argument("root", metavar="DIR", help="a folder holding run folders (at any depth), or one run folder")
    r.add_argument("--json", action="store_true", help="print one JSON object per run")
    r.set_defaults(run=run_runs)


def run_list(args) -> int:
    if args.json:  # from the catalog too (the registry's copy): no model is imported
        print(json.dumps({"models": [catalog.model(n) for n in catalog.names()], "datasets": catalog.datasets(),
                          "pretrained": _pretrained()}))
        return 0
    print("models:")  # from the catalog (the registry's copy): genzoo list starts without torch
    for name in catalog.names():
        print(f"  {name:22s} likelihood: {catalog.likelihood_kind(name):5s}  {catalog.summary(name)}")
    print("datasets:")
    for d in catalog.datasets():
        print(f"  {d['name']:22s} {'/'.join(d['splits']):16s} {d['summary']}")
    shipped = _pretrained()
    print(f"pretrained (in {recipes.pretrained_root()}; every command takes the folder):" if shipped else
          "pretrained: none found")
    for r in shipped:
        print(f"  {r['run']}: {r['model']} on {r['data']}, {r['figure']}")
    return 0


def _pretrained() -> list[dict]:
    """The shipped run folders with their measured figure (the tightest kept `genzoo eval` on the full test set)."""
    out = []
    for folder in runs.find(recipes.pretrained_root()):
        record = runs.read_record(folder)
        best = figures.tightest_likelihood(runs.read_evals(folder), record["data"].get("name"))
        kind = catalog.likelihood_kind(record.get("model")) or "?"
        figure = "not evaluated" if best is None else (
            f"{bound_mark(kind)}{best['nll_nats']:.2f} nats = {best['bits_per_dim']:.4f} bits/dim "
            f"({kind}{figures.estimator_note(best)}, {best['count']} test images)")
        out.append({"run": str(folder), "model": record.get("model"), "data": record["data"].get("name"),
                    "figure": figure})
    return out


def describe_run(folder) -> dict:
    """What `genzoo runs` shows of one run folder, read from run.json and metrics.jsonl (no weights
    loaded); a broken folder is a row that says what is wrong ("problems")."""
    problems = runs.problems(folder)
    if problems:
        return {"run": str(folder), "problems": problems}
    record, metrics = runs.read_record(folder), runs.read_metrics(folder)
    name = record.get("model", "?")
    kind = catalog.likelihood_kind(name) or "?"
    last = metrics[-1] if metrics else {}
    shown = runs.shown_figures(folder, record, metrics)  # what list, report and the README show
    spec = record["data"]
    data_name = spec.get("name", "?") + (f" ({spec['binarize']})" if spec.get("binarize", "none") != "none" else "")
    return {"run": str(folder), "model": name, "data": data_name, "likelihood_kind": kind,
            "epochs": last.get("epoch", 0), "steps": last.get("step", 0), "wall_s": last.get("elapsed_s"),
            "figure": _figure_record(shown),
            "conditional": bool(runs.model_record(folder).get("config", {}).get("num_classes")) or None}


def _figure_record(shown: dict) -> dict | None:
    """The one figure `runs` shows (nll, else the first per-image figure), with where it comes from."""
    per_image = figures.test_figures(shown)
    if not per_image:
        return None
    name = "nll" if "nll" in per_image else next(iter(per_image))
    return {"figure": name, "value": per_image[name], "count": shown.get("test_count"), "source": shown["source"]}


def _figure(r: dict) -> str:
    shown = r["figure"]
    if shown is None:
        return "-"
    if shown["figure"] == "nll":
        return f"{bound_mark(r['likelihood_kind'])}{shown['value']:.3f} nats ({shown['source']})"
    return f"{shown['figure']} {shown['value']:.5f} ({shown['source']})"


def run_runs(args) -> int:
    root = recipes.resolve(args.root)  # a shipped model's name stands for its folder
    if not root.exists():
        raise GenzooError(f"{args.root}: no such folder")
    found = runs.find(root)
    if not found:
        raise GenzooError(f"{args.root}: no run folders (folders with run.json) at or below it")
    rows = [describe_run(f) for f in found]
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if v is not None}))
        return 0
    header = ("run", "model", "data", "epochs", "steps", "wall", "test figure", "kind")
    table = [header] + [(r["run"], r["model"], r["data"], str(r["epochs"]), str(r["steps"]),
                         "-" if r["wall_s"] is None else f"{r['wall_s']:.0f} s", _figure(r),
                         r["likelihood_kind"] + (", of x given y" if r["conditional"] else ""))
                        if "problems" not in r else (r["run"], "BROKEN", "; ".join(r["problems"]), "", "", "", "", "")
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
