"""``genzoo train MODEL --data NAME --out DIR`` and ``genzoo train --resume DIR``.

Everything that can fail on the user's input is checked before the run folder is created;
the folder then appears whole (run.json + config.json) or not at all.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import typing
from pathlib import Path

import torch

from ..evaluation import figures
from .. import __version__, data, models, recipes, runs
from ..training import distributed, tensorboard_log
from ..errors import GenzooError
from ..training.precision import TRAIN_PRECISIONS, describe, measured, resolve, warn_if_emulated
from ..training.config import TrainConfig
from ..training.trainer import Trainer
from .parsing import named_model
from .common import SEED, able, add_device_options, apply_device_options, choice, number
from . import COMMANDS

# (flag, type, help) of every TrainConfig field; the default is read from TrainConfig.
TRAIN_OPTIONS = [
    ("--epochs", number(int, 1), "with --resume: a larger N trains a finished run further"),
    ("--minutes", number(float, 0), "wall-clock budget over the run (a new run given it and none of --epochs, --lr, "
                                    "--batch-size, --warmup-steps, --min-lr-ratio takes its model's budget recipe, "
                                    "said in one line); 0 = none"),
    ("--batch-size", number(int, 1), "global, over all processes"),
    ("--lr", number(float, 0, low_open=True), "peak learning rate (Adam)"),
    ("--warmup-steps", number(int, 0), "linear warm-up, then cosine decay"),
    ("--min-lr-ratio", number(float, 0, 1), "the cosine ends at lr * this"),
    ("--grad-clip", number(float, 0), "max global gradient norm; 0 = off"),
    ("--weight-decay", number(float, 0), "Adam's L2 penalty"),
    ("--seed", SEED, "of the initial weights, the data order and every random draw of training"),
    ("--eval-batch-size", number(int, 1), "images per forward pass when evaluating"),
    ("--eval-limit", number(int, 0), "evaluate each epoch on a fixed, seeded random subset of N test images "
                                     "(stratified by class); 0 = all"),
    ("--train-limit", number(int, 0), "train on a fixed, seeded random subset of N training images (stratified by "
                                      "class); 0 = all"),
    ("--checkpoint-every", number(int, 0), "also checkpoint every N steps; 0 = at epoch ends only"),
    ("--checkpoint-minutes", number(float, 0), "also checkpoint after this much training time; 0 = off"),
    ("--precision", choice(TRAIN_PRECISIONS), "bf16: mixed-precision forward pass (GPU, or a CPU with AVX512-BF16/AMX; "
                                              "emulated and slower elsewhere); auto: bf16 where native, else fp32; "
                                              "the choice is stored in run.json"),
    ("--max-bad-steps", number(int, 1), "steps in a row with a non-finite loss or gradient (each skipped) "
                                        "that stop the run"),
    ("--ema", number(float, 0, 1, high_open=True), "keep a moving average of the weights with this decay (e.g. 0.999), "
                                                   "saved beside them; eval and sample use it (--no-ema: the raw "
                                                   "weights); 0 = none"),
]


def add_parsers(sub, argv) -> None:
    t = sub.add_parser("train", help=COMMANDS["train"][1])
    t.add_argument("model", nargs="?", help=f"one of: {', '.join(models.names())}")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    t.add_argument("--data", help=f"a dataset, one of: {', '.join(data.names())}; or a folder of images (any name "
                                  f"with a /, or an existing folder): class subfolders are labels, train/ and test/ "
                                  f"subfolders the splits (else a seeded 90/10 split); with --resume, the new place of "
                                  f"a run's folder that moved")
    t.add_argument("--image-size", type=number(int, 2, 1024),
                   help="a folder of images: centre-crop and resize every image to S x S (default: all must share one "
                        "size)")
    t.add_argument("--grayscale", action="store_true",
                   help="a folder of images: one channel (default: RGB unless every image is grey)")
    t.add_argument("--out", metavar="DIR", help="new (or empty) run folder")
    t.add_argument("--data-dir", help="where to look for data files first")
    t.add_argument("--levels", type=number(int, 2, 256), help="re-quantize the data to K levels")
    t.add_argument("--binarize", choices=data.BINARIZE_MODES, default=None, help="default none")
    t.add_argument("--conditional", action="store_true", help="condition on class labels (models with num_classes)")
    t.add_argument("--allow-changed-data", action="store_true",
                   help="with --resume: go on although the data differs from what the run was launched on")
    # Training options default to None so that --resume can tell what was given; TrainConfig fills the rest.
    defaults = TrainConfig()
    group = t.add_argument_group("training options (defaults from TrainConfig)")
    for flag, kind, help_ in TRAIN_OPTIONS:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        group.add_argument(flag, type=kind, default=None, help=f"{help_ + '; ' if help_ else ''}default {default}")
    group.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the training step; default False (eager)")
    group.add_argument("--fit-cosine", action="store_true", default=None,
                       help="with --minutes: time steps of the warm-up, then end the cosine when the budget ends "
                            "(--minutes alone takes it, by the budget recipe); default False")
    t.add_argument("--no-recipe", action="store_true",
                   help="with --minutes: train with the plain defaults, not the model's budget recipe (recipes.py; "
                        "any option given wins over it anyway); default off")
    t.add_argument("--tensorboard", action="store_true",
                   help="also write scalars and a sample grid per epoch to DIR/tensorboard (needs the tensorboard "
                        "package)")
    add_device_options(t)
    named = named_model({s for a in t._actions for s in a.option_strings if a.nargs == 0}, argv[1:], models.names()) \
        if argv[:1] == ["train"] else None
    if named:
        add_model_options(t, named)  # the model's own options, once the model is named (anywhere after train)
    t.set_defaults(run=run)


def add_model_options(parser, model_name: str) -> None:
    """One --option per field of the model's config (image_shape, levels and num_classes come from the data)."""
    group = parser.add_argument_group(f"{model_name} options (the model's config; see docs/CONTRACT.md)")
    config = models.get(model_name).Config
    hints = typing.get_type_hints(config)
    meaning = models.option_help(model_name)
    for name, default in models.option_defaults(model_name).items():
        if name in ("image_shape", "levels", "num_classes"):
            continue
        flag, kind, dest = "--" + name.replace("_", "-"), hints[name], f"model_{name}"
        what = meaning.get(name, "")
        what = what.replace("%", "%%") + "; " if what else ""  # argparse formats help with %
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{what}default {default}")
        elif kind in (int, float):
            group.add_argument(flag, dest=dest, type=number(kind), default=None, metavar=kind.__name__.upper(),
                               help=f"{what}{'an integer' if kind is int else 'a number'}; default {default}")
        else:
            allowed = config.choices.get(name)
            group.add_argument(flag, dest=dest, default=None, type=choice(allowed) if allowed else str,
                               metavar="{" + ",".join(allowed) + "}" if allowed else "TEXT", help=f"{what}default "
                                                                                                  f"{default}")


@dataclasses.dataclass
class Plan:
    """What a train command will do, decided before anything is written."""

    out: Path
    train: TrainConfig
    spec: dict  # the data recipe
    tensorboard: bool
    record: dict | None = None  # run.json of a resumed run
    model_record: dict | None = None  # config.json of a resumed run
    fingerprint: dict | None = None  # of each split as prepared (data.fingerprint): kept in run.json


def _given_train_options(args) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}


def _resume_plan(args) -> Plan:
    if args.model or args.out:
        raise GenzooError("--resume DIR continues a run as it was launched: give no MODEL or --out")
    out = Path(args.resume)
    given = _given_train_options(args)
    record, options, model_record = runs.resume_plan(out, given, [o for o in runs.LAUNCH_ONLY if getattr(args, o)])
    try:
        tcfg = TrainConfig(**options)
    except TypeError:
        raise GenzooError(f"{out / runs.RUN_FILE}: not a genzoo run record") from None
    if args.threads is None and record.get("threads"):
        torch.set_num_threads(record["threads"])
    return Plan(out, tcfg, _moved_data(args, record["data"]), bool(record.get("tensorboard")), record, model_record)


def _moved_data(args, spec: dict) -> dict:
    """The run's data recipe; for a folder of pictures that moved, --data NEW points it at the new
    place (the pictures themselves are checked against the run's fingerprint before training)."""
    if not args.data:
        return spec
    if not (data.imagefolder.is_folder_name(spec["name"]) and data.imagefolder.is_folder_name(args.data)):
        raise GenzooError("--resume continues a run on the data it was launched on: --data only points a run "
                          "trained on a folder of pictures at the folder's new place")
    return {**spec, "name": str(Path(args.data).resolve())}


def _check_data(args, plan: Plan, fingerprints: dict) -> None:
    """A resumed run trains on the data it was launched on: a changed split (pictures added or removed
    reshuffle a folder's seeded split) is refused unless --allow-changed-data says to go on."""
    changed = [why for split, now in fingerprints.items() if (why := figures.data_changed(plan.record, split, now))]
    if changed and not args.allow_changed_data:
        raise GenzooError(f"{changed[0]}; --resume refuses to go on on other data (--allow-changed-data trains "
                          f"on it anyway, and the run records the new data)")
    for why in changed:
        print(f"note: {why}; training on it (--allow-changed-data)", flush=True)


def _check_apart(out: Path, folder: Path) -> None:
    """A run folder inside the data folder would become a class of the data (and break every later
    use of it), so it is refused before any work. (Data inside the run folder cannot happen: --out
    must be new or empty.)"""
    if out == folder or folder in out.parents:
        raise GenzooError(f"--out {out} is inside the --data folder {folder}: the run would become part of the "
                          f"dataset; put the run folder elsewhere")


def _codes_spec(args) -> dict:
    """--data codes:RUN: the code grids of the model trained in RUN, and that run's own data recipe."""
    source = data.codes.source({"name": args.data})
    if args.data_dir or args.levels or args.binarize or args.image_size or args.grayscale:
        raise GenzooError("--data codes:RUN takes the coding run's own data as it was prepared: give no --data-dir, "
                          "--levels, --binarize, --image-size or --grayscale")
    coder = runs.open_run(source, need_record=True)
    data.codes.check_coder(coder.model, f"--data {args.data}: {source}")
    return {"name": data.codes.PREFIX + str(source.resolve()), "codes_of": coder.spec}


def _launch_plan(args) -> Plan:
    if not args.model:
        raise GenzooError(f"train: name a model ({', '.join(models.names())}) or --resume DIR")
    models.get(args.model)
    if not args.data or not args.out:
        raise GenzooError("train: --data NAME and --out DIR are required")
    out = Path(args.out)
    runs.check_new_folder(out)
    if data.codes.is_codes_name(args.data):
        if not models.get(args.model).raster_order:  # the pair samples and completes through the prior's sampler
            raise GenzooError(f"--data codes:RUN: {args.model} cannot be a prior of codes; a prior is an exact "
                              f"model of the code grid in raster order: {able('raster_order')}")
        return Plan(out, TrainConfig(**_given_train_options(args)), _codes_spec(args), args.tensorboard)
    name = str(Path(args.data).resolve()) if data.imagefolder.is_folder_name(args.data) else args.data
    if data.imagefolder.is_folder_name(args.data):
        _check_apart(out.resolve(), Path(name))
    spec = {"name": name, "data_dir": args.data_dir, "levels": args.levels, "binarize": args.binarize or "none"}
    if args.image_size or args.grayscale:
        spec.update(image_size=args.image_size, grayscale=args.grayscale)
    return Plan(out, TrainConfig(**_given_train_options(args)), spec, args.tensorboard)


def _model(args, plan: Plan, train_ds: data.Dataset, levels: int, transform=None):
    """The untrained model: the resumed run's config, or the named model with the data's shape and levels."""
    # the initial weights are a function of --seed (a resume from step 0 rebuilds them)
    torch.manual_seed(plan.train.seed)
    if plan.model_record is not None:
        model = models.build_from_record(plan.model_record, runs.config_path(plan.out))
        data.check_fits(model, train_ds, levels)
        return model
    options = {k[len("model_"):]: v for k, v in vars(args).items() if k.startswith("model_") and v is not None}
    if args.conditional:
        if "num_classes" not in {f.name for f in models.config_fields(args.model)}:
            raise GenzooError(f"{args.model} has no class-conditional variant")
        if not train_ds.num_classes:
            raise GenzooError(f"{args.data} has no labels to condition on")
        if train_ds.num_classes < 2:
            raise GenzooError(f"--conditional: {args.data} has one class only; a label that never varies tells "
                              f"the model nothing (train without --conditional)")
        options["num_classes"] = train_ds.num_classes
    model = models.build(args.model, image_shape=train_ds.image_shape, levels=levels, **options)
    for name, (other, value) in model.Config.applies_when.items():
        if name in options and getattr(model.config, other) != value:
            raise GenzooError(f"--{name.replace('_', '-')} takes effect only with --{other.replace('_', '-')} {value} "
                              f"(this {args.model} has {other} {getattr(model.config, other)})")
    _dry_run(model, train_ds, transform)
    return model


def _dry_run(model, train_ds: data.Dataset, transform=None) -> None:
    """One forward pass of a copy on two training images before any folder exists, so that options the config
    accepts but the network cannot run with (shapes that do not meet) are one line, not a traceback mid-run. The
    copy and the saved random state leave the run exactly as without it."""
    state = torch.get_rng_state()
    try:
        with torch.no_grad():
            probe = copy.deepcopy(model).eval()
            x = train_ds.images[:2]  # as training sees them: through the batch transform (dynamic binarization)
            x = transform(x, torch.Generator().manual_seed(0)) if transform is not None else x
            probe.loss(x, train_ds.labels[:2] if model.num_classes else None)
    except (RuntimeError, ValueError, IndexError) as e:
        raise GenzooError(f"{model.name} cannot run on these images with these options: "
                          f"{str(e).strip().splitlines()[0]}") from None
    finally:
        torch.set_rng_state(state)


def _share(used, split) -> str:
    """How many images of a split a run uses: all of them, or (--train-limit, --eval-limit) "N of M"."""
    return f"{len(used)}" if len(used) == len(split) else f"{len(used)} of {len(split)}"


def _write_run_folder(args, plan: Plan, model, trainer: Trainer) -> None:
    """Rank 0: create the run folder (a new run), or, for a resumed one, record its new --epochs or
    --minutes once the trainer finds there is training to do (a resume with nothing to do leaves
    run.json byte for byte as it was)."""
    if plan.record is None:
        runs.create(plan.out, {"model": args.model, "data": plan.spec, "train": dataclasses.asdict(plan.train),
                               "threads": args.threads, "tensorboard": plan.tensorboard,
                               "genzoo_version": __version__, "data_fingerprint": plan.fingerprint}, model)
        if data.codes.is_codes_name(plan.spec["name"]):  # the prior loads with its coder, as one model of images
            models.link_codes(plan.out, data.codes.source(plan.spec))
        return
    updated = {**plan.record, "train": dataclasses.asdict(plan.train), "data": plan.spec,
               "data_fingerprint": plan.fingerprint}
    if "data_fingerprint" not in plan.record and not args.data:
        del updated["data_fingerprint"]  # a run from before fingerprints: nothing to compare, nothing to add
    if (_given_train_options(args) or args.data or args.allow_changed_data) and updated != plan.record:
        trainer.on_start = lambda: runs.write_record(plan.out, updated)  # the new budget or data holds from now on
    if runs.committed_step(plan.out) is None:
        print(f"{plan.out}: no checkpoint yet (the run died before its first one): restarting from step 0", flush=True)


SCHEDULE_OPTIONS = ("epochs", "lr", "batch_size", "warmup_steps", "min_lr_ratio")  # any of them: no budget recipe


def _take_budget_recipe(args, plan: Plan, levels: int) -> None:
    """A new run with --minutes and no schedule option (SCHEDULE_OPTIONS) takes its model's budget recipe
    (recipes.budget_recipe) wherever the command line gave no option of its own; said in one line."""
    given = _given_train_options(args)
    if any(k in given for k in SCHEDULE_OPTIONS):  # the user chose a schedule: the run is theirs, as before
        return
    options, train, where = recipes.budget_recipe(args.model, levels)
    taken_train = {k: v for k, v in train.items() if k not in given}
    taken_model = {k: v for k, v in options.items() if getattr(args, f"model_{k}", None) is None}
    if not taken_train and not taken_model:
        return
    for k, v in taken_model.items():
        setattr(args, f"model_{k}", v)
    plan.train = dataclasses.replace(plan.train, **taken_train)
    flags = recipes.flags({**taken_model, **taken_train})
    print(f"budget recipe ({where}; recipes.py): {' '.join(flags)} (an option given wins; --no-recipe: the "
          f"defaults)", flush=True)


def _batch_that_fits(cfg: TrainConfig, images: int, world: int) -> TrainConfig:
    """A new run's batch size, capped at its training images (a user's first folder is small); said once.
    The capped size is what run.json stores, so a resume trains with it."""
    n = min(cfg.train_limit or images, images)
    fits = n // world * world
    if cfg.batch_size <= fits or fits < 1:
        return cfg  # fits, or nothing fits (the trainer's error says so)
    print(f"note: batch size {cfg.batch_size} is larger than the {n} training images: training with batch size "
          f"{fits}", flush=True)
    return dataclasses.replace(cfg, batch_size=fits)


def run(args) -> int:
    device = apply_device_options(args)
    plan = _resume_plan(args) if args.resume else _launch_plan(args)
    if plan.tensorboard:
        tensorboard_log.require_tensorboard()
    requested = plan.train.precision
    plan.train = dataclasses.replace(plan.train, precision=resolve(requested, device))  # run.json keeps what ran
    warn_if_emulated(plan.train.precision, device)
    rank, world, local = distributed.init()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local)
    train_ds, levels, transform = data.prepare(plan.spec, "train")
    test_ds, _, _ = data.prepare(plan.spec, "test")
    if plan.record is None and plan.train.minutes and not args.no_recipe:
        _take_budget_recipe(args, plan, levels)
    plan.fingerprint = {"train": data.fingerprint(train_ds), "test": data.fingerprint(test_ds)}
    if plan.record is None:
        plan.train = _batch_that_fits(plan.train, len(train_ds), world)
    else:
        _check_data(args, plan, plan.fingerprint)
    model = _model(args, plan, train_ds, levels, transform)
    seconds = None
    if requested == "auto" and plan.train.precision == "bf16":  # native bf16: take it only where it is faster
        b = min(plan.train.batch_size, len(train_ds))
        chosen, seconds = measured(model, train_ds.images[:b], train_ds.labels[:b] if model.num_classes else None,
                                   device)
        plan.train = dataclasses.replace(plan.train, precision=chosen)
    trainer = Trainer(model, (train_ds.images, train_ds.labels), (test_ds.images, test_ds.labels), plan.train, plan.out,
                      batch_transform=transform, device=device, log=lambda m: print(m, flush=True))
    if rank == 0:
        _write_run_folder(args, plan, model, trainer)
        print(f"{model.name}: {sum(p.numel() for p in model.parameters()):,} parameters; {plan.spec['name']} "
              f"{list(train_ds.image_shape)} x {_share(trainer.train_images, train_ds)} train, "
              f"{_share(trainer.test_images, test_ds)} test, {levels} levels; "
              f"{world} process(es) on {device}, {describe(requested, plan.train.precision, device, seconds)}",
              flush=True)
        if plan.tensorboard:  # inside the run folder, so only once it exists
            trainer.on_epoch = tensorboard_log.TensorBoardLogger(model, runs.tensorboard_dir(plan.out),
                                                                 resume_step=runs.committed_step(plan.out) or 0)
    distributed.barrier(world)  # the run folder exists before any rank trains
    trainer.fit(resume=bool(args.resume))
    if trainer.on_epoch is not None:
        trainer.on_epoch.close()
    distributed.finish(world)
    return 0

