"""``genzoo race``: train every chosen model on equal terms (the same data, minutes and threads, one after another,
each alone) and score each the same way; writes race.json, race.md (the table) and report.html in DIR.

    genzoo race --data binarized-mnist --minutes 4 --models all --threads 2 --out races/bmnist
    genzoo race --data digits --minutes 0.2 --models autoregressive,gan --out R     # families by name

A killed race run again with the same options resumes: finished models keep their entries, the model it was on
resumes its training folder (``train --resume``). Each model trains with its budget recipe (``genzoo train --minutes``:
recipes.budget_recipe, the cosine fitted to the budget; race.json keeps each model's training options), in fp32 on
every CPU so that no model's figure depends on a precision chosen for it; its figure is ``genzoo eval`` at the model's
default estimator (a Monte-Carlo one with the fewest draws that give its standard error: ``with_standard_error`` of
its EvalOptions) on the test split, within an equal evaluation budget (``--eval-minutes``: an estimator too slow for
the whole split scores the largest seeded subset that fits, with its standard error; ``--eval-limit`` one subset for
all); FID with ``--fid N``. For a
model that samples in raster order (``raster_order``) the time to sample 64 images is set against its floor, one
full forward pass over 64 images (the arithmetic a perfect cache does): "x its floor" in the table.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import time
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .. import models, runs
from ..errors import GenzooError
from ..evaluation.figures import bound_mark
from . import COMMANDS, evaluate, reporting, train
from .common import add_device_options, apply_device_options, checked_split, number, parse_command, run_command

RACE_FILE = "race.json"
TABLE_FILE = "race.md"
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
# Every model of the published binarized-MNIST race scores its whole test split in under 5 minutes (RealNVP 246 s);
# flow matching's ODE likelihood and a GAN's annealed importance sampling take hours there: equal terms for them is an
# equal evaluation budget, each figure on as many seeded test images as it allows (a subset with its standard error)
EVAL_MINUTES = 10.0
PROBE_IMAGES = 100
TERMS_SINCE = {"eval_minutes": EVAL_MINUTES}  # terms added after a race was published: an older race has their default
TRAINED_WITH = ("lr", "batch_size", "warmup_steps", "epochs", "fit_cosine", "compile", "eval_limit")


def add_parsers(sub, argv) -> None:
    r = sub.add_parser("race", help=COMMANDS["race"][1])
    r.add_argument("--data", required=True, help="the dataset every model trains on (genzoo list)")
    r.add_argument("--minutes", type=number(float, 0, low_open=True), required=True,
                   help="each model's training budget in wall-clock minutes")
    r.add_argument("--models", default="all",
                   help=f"comma-separated model names or families ({', '.join(families())}; a name that is both "
                        f"means the family, model:NAME the model alone), or all; default all")
    r.add_argument("--fid", type=number(int, 20), help="also FID, KID, precision and recall of N samples a model")
    r.add_argument("--eval-limit", type=number(int, 1),
                   help="score every model on a seeded subset of N test images (default: the whole test split, "
                        "within --eval-minutes)")
    r.add_argument("--eval-minutes", type=number(float, 0, low_open=True), default=EVAL_MINUTES,
                   help="each model's evaluation budget: the whole test split where its estimator fits it (timed on "
                        f"{PROBE_IMAGES} images), else the largest seeded subset that does, with its standard error; "
                        f"default {EVAL_MINUTES}")
    r.add_argument("--out", required=True, metavar="DIR", help="the race folder (one run folder a model inside)")
    add_device_options(r)
    r.set_defaults(run=run_race)


def family_of(name: str) -> str:
    """The family package of a registered model: models/<family>/ (e.g. autoregressive); "other" for a model
    registered from elsewhere (a plugin, a test file)."""
    parts = models.get(name).__module__.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["genzoo", "models"] else "other"


def families() -> list[str]:
    return list(dict.fromkeys(family_of(n) for n in models.names()))


def chosen(text: str) -> list[str]:
    """The registered models a --models value names (names, families, all), in the registry's order. A word that
    names a family and a model means the family; ``model:NAME`` is the model alone."""
    wanted = set()
    for word in (w.strip() for w in text.split(",") if w.strip()):
        if word == "all":
            wanted |= set(models.names())
        elif word in families():
            wanted |= {n for n in models.names() if family_of(n) == word}
        elif word.removeprefix("model:") in models.names():
            wanted.add(word.removeprefix("model:"))
        else:
            raise GenzooError(f"--models: {word!r} is neither a model nor a family (models: "
                              f"{', '.join(models.names())}; families: {', '.join(families())}; or all)")
    if not wanted:
        raise GenzooError("--models names no model")
    return [n for n in models.names() if n in wanted]


def machine(threads: int) -> dict:
    """The CPU (model name and the flags that decide its speed), threads and torch: said once per race."""
    name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("unknown", platform.processor()):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": name, "flags": [f for f in FLAGS if f in flags], "threads": threads, "torch": torch.__version__}


def _terms(args) -> dict:
    """What every model of the race shares; a resumed race must be run with the same."""
    return {"data": args.data, "minutes": args.minutes, "threads": args.threads, "fid": args.fid or 0,
            "eval_limit": args.eval_limit or 0, "eval_minutes": args.eval_minutes}


def _load(out: Path, terms: dict) -> dict:
    path = out / RACE_FILE
    if not path.exists():
        return {**terms, "machine": machine(terms["threads"]), "entries": {}}
    try:
        race = {**TERMS_SINCE, **json.loads(path.read_text())}
        entries = race["entries"]
    except (ValueError, KeyError, TypeError):
        raise GenzooError(f"{path}: not a genzoo race record") from None
    changed = [k for k in terms if race.get(k) != terms[k]]
    if changed:
        raise GenzooError(f"{out} holds a race with other terms ({', '.join(f'{k} {race.get(k)}' for k in changed)}): "
                          f"resume it with the same options, or race into a new --out")
    return {**race, "entries": entries}


def _save(out: Path, race: dict) -> None:
    ckpt.atomic_write_bytes(out / RACE_FILE, (json.dumps(race, indent=1) + "\n").encode())
    ckpt.atomic_write_bytes(out / TABLE_FILE, table(race).encode())


def _train(args, name: str, folder: Path) -> None:
    if (folder / runs.RUN_FILE).exists():  # killed mid-training: resume it (a finished run is left as it is)
        argv = ["train", "--resume", str(folder)]
    else:
        argv = ["train", name, "--data", args.data, "--out", str(folder), "--minutes", str(args.minutes),
                "--threads", str(args.threads), "--precision", "fp32"] + (["--device", args.device] if args.device
                                                                          else [])
    print(f"race: {name}: genzoo {' '.join(argv)}", flush=True)
    status = run_command(train, argv)
    if status:
        raise GenzooError(f"race: {name} failed to train (genzoo {' '.join(argv)} exited {status})")


def _with_standard_error(model) -> list[str]:
    """The eval flags that give the model's Monte-Carlo figure its standard error (none for most models)."""
    return [w for k, v in type(model).EvalOptions.with_standard_error.items() for w in (f"--{k.replace('_', '-')}",
                                                                                         str(v))]


def _eval_limit(args, name: str, run: runs.Run, test, device) -> int | None:
    """--eval-limit; else None (the whole test split) where the model's estimator, timed on PROBE_IMAGES seeded test
    images, would score it within --eval-minutes; else the largest seeded subset that it would."""
    if args.eval_limit:
        return args.eval_limit
    probe = min(len(test), PROBE_IMAGES)
    start = time.perf_counter()
    argv = ["eval", str(run.folder), "--limit", str(probe), *_with_standard_error(run.model)]
    evaluate.measure(parse_command(evaluate, argv), run, test, device)
    per_image = (time.perf_counter() - start) / probe  # fixed costs (a fitted estimator) counted as per image: safe
    if per_image * len(test) <= args.eval_minutes * 60:
        return None
    limit = max(probe, int(args.eval_minutes * 60 / per_image))
    print(f"race: {name}: its estimator takes {per_image:.2f} s an image, {per_image * len(test) / 60:.0f} min for "
          f"the {len(test):,} test images: scored on a seeded subset of {limit:,} (--eval-minutes "
          f"{args.eval_minutes:g}), with its standard error", flush=True)
    return limit


def _score(args, name: str, folder: Path, device) -> dict:
    """The model's figure (genzoo eval at its default estimator, on as many test images as --eval-minutes allows),
    FID where asked, sampling time, speed, size."""
    run = runs.open_run(folder, need_record=True)
    test = checked_split(run, parse_command(evaluate, ["eval", str(folder)]), "test")
    limit = _eval_limit(args, name, run, test, device)
    argv = ["eval", str(folder), *_with_standard_error(run.model)] + (["--limit", str(limit)] if limit else []) + \
        (["--fid", str(args.fid)] if args.fid and run.model.can_sample else [])  # no sampler: no FID, no refusal
    ev = parse_command(evaluate, argv)
    start = time.perf_counter()
    result, text = evaluate.measure(ev, run, test, device)
    eval_s = time.perf_counter() - start
    print(f"race: {name}: {text}", flush=True)
    entry = {"model": name, "family": family_of(name), "likelihood_kind": run.model.likelihood_kind,
             "parameters": run.parameters, "eval_s": eval_s,
             "train": {k: run.record.get("train", {}).get(k) for k in TRAINED_WITH}}
    for key in ("nll_nats", "bits_per_dim", "standard_error", "subset_standard_error", "count", "subset_of", "mse",
                "psnr_db"):
        if key in result:
            entry[key] = result[key]
    if "quality" in result:
        entry["fid"], entry["precision"], entry["recall"] = (result["quality"][k] for k in ("fid", "precision",
                                                                                           "recall"))
    metrics = run.metrics
    seconds = sum(m.get("epoch_s", 0) for m in metrics)
    entry["train_minutes"] = metrics[-1]["elapsed_s"] / 60 if metrics else 0
    entry["images_per_s"] = (sum(m["images_per_s"] * m.get("epoch_s", 0) for m in metrics) / seconds if seconds
                             else None)
    entry["epochs"] = metrics[-1]["epoch"] if metrics else 0
    if run.model.can_sample:
        entry.update(sampling_times(run.model.to(device).eval(), test.images[:64].to(device)))
    return entry


def sampling_times(model, images) -> dict:
    """sample_64_s: one cold ``sample(64)``; for a model that samples in raster order, forward_64_s: its floor, one
    warm full pass over ``images`` (64 test images, the arithmetic a perfect cache does)."""
    start = time.perf_counter()
    model.sample(64, generator=torch.Generator().manual_seed(0))
    times = {"sample_64_s": time.perf_counter() - start}
    if model.raster_order:
        y = torch.zeros(len(images), dtype=torch.long) if model.num_classes else None
        with torch.no_grad():
            model.loss(images, y)
            start = time.perf_counter()
            model.loss(images, y)
            times["forward_64_s"] = time.perf_counter() - start
    return times


def run_race(args) -> int:
    names = chosen(args.models)
    args.threads = args.threads or torch.get_num_threads()  # every model gets the same, said in the table
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise GenzooError(f"--out {out}: exists and is not a folder")
    race = _load(out, _terms(args))
    device = apply_device_options(args)
    out.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if n not in race["entries"]]
    print(f"race on {args.data}: {len(names)} model(s), {args.minutes:g} min each, {args.threads} thread(s); "
          f"{len(names) - len(todo)} done already", flush=True)
    for name in todo:
        torch.set_num_threads(args.threads)
        _train(args, name, out / name)
        torch.set_num_threads(args.threads)
        entry = _score(args, name, out / name, device)
        entry["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        race["entries"][name] = entry
        _save(out, race)
    _save(out, race)
    status = run_command(reporting, ["report", *[str(out / n) for n in names], "-o", str(out / "report.html")])
    print(table(race), end="")
    return status


def table(race: dict) -> str:
    """The race as a markdown table, best likelihood first (then the models without one), the terms and machine
    above it."""
    m = race["machine"]
    head = (f"Race on {race['data']}: {race['minutes']:g} min of training a model, {race['threads']} thread(s), one "
            f"model at a time; {m['cpu']} ({', '.join(m['flags']) or 'no avx2'}), torch {m['torch']}.\n\n")
    rows = sorted(race["entries"].values(), key=lambda e: (e.get("nll_nats") is None, e.get("nll_nats") or 0))
    if any(e.get("subset_of") for e in rows) and not race.get("eval_limit"):
        budget = {**TERMS_SINCE, **race}["eval_minutes"]
        head += (f"A figure on N of the test images: its estimator would have needed more than {budget:g} min for "
                 f"them all (`--eval-minutes`); the mean of a seeded subset, with its standard error.\n\n")
    fid = any("fid" in e for e in rows)
    lines = ["| model | family | nats/image | bits/dim | kind | " + ("FID | " if fid else "")
             + "train img/s | epochs | sample 64 (s) | x its floor | parameters |",
             "| --- | --- | --- | --- | --- | " + ("--- | " if fid else "") + "--- | --- | --- | --- | --- |"]
    for e in rows:
        nll = e.get("nll_nats")
        mark = bound_mark(e["likelihood_kind"])
        se = e.get("standard_error") or e.get("subset_standard_error")
        subset = f"{e['count']:,} of {e['subset_of']:,} images, " if e.get("subset_of") else ""
        figure = f"{mark}{nll:.2f}" + (f" ({subset}SE {se:.2f})" if se else "") if nll is not None else \
            (f"MSE {e['mse']:.4f}" if "mse" in e else "-")
        bpd = f"{e['bits_per_dim']:.3f}" if "bits_per_dim" in e else "-"
        lines.append(f"| `{e['model']}` | {e['family']} | {figure} | {bpd} | {e['likelihood_kind']} | "
                     + (f"{e['fid']:.2f} | " if fid and "fid" in e else ("- | " if fid else ""))
                     + f"{e['images_per_s']:.0f} | {e['epochs']} | "
                     + (f"{e['sample_64_s']:.2f}" if "sample_64_s" in e else "-") + " | "
                     + (f"{e['sample_64_s'] / e['forward_64_s']:.1f}" if e.get("forward_64_s") else "-")
                     + f" | {e['parameters']:,} |")
    return head + "\n".join(lines) + "\n"


README_BLOCK = re.compile(r"<!-- race: (?P<path>\S+) -->\n.*?<!-- /race -->", re.S)


def readme_tables(text: str, root: Path) -> str:
    """``text`` (README.md) with every ``<!-- race: PATH -->`` ... ``<!-- /race -->`` block made again from the
    race.json at PATH (relative to ``root``): the README's comparison tables are the races', never typed
    (``python bench/race_tables.py`` rewrites them; the suite checks that they agree)."""
    def block(m: re.Match) -> str:
        path = root / m["path"]
        try:
            race = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise GenzooError(f"{path}: cannot read the race the README names ({e})") from None
        return f"<!-- race: {m['path']} -->\n{table(race)}<!-- /race -->"
    return README_BLOCK.sub(block, text)
