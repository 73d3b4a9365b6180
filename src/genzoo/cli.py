"""The ``genzoo`` command line.

    genzoo list
    genzoo train MODEL --data NAME --out DIR [options]    |   genzoo train --resume DIR
    genzoo eval DIR          genzoo sample DIR -n N -o FILE.png      genzoo complete DIR -o FILE.png
    genzoo interpolate DIR -o FILE.png      genzoo toy nice|realnvp --data moons -o FILE.png

A bad argument, a missing run folder or a bad file prints one line on stderr and exits
with status 2; nothing already written is touched. Under ``torchrun`` the train command
runs DistributedDataParallel (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import os
import sys
import typing
from pathlib import Path

import torch
from tqdm import tqdm

from . import __version__, data, images, likelihood, models, probe, report, tensorboard_log, toy, views
from . import checkpoint as ckpt
from .errors import GenzooError
from .models.autoencoders import CORRUPTIONS
from .trainer import CHECKPOINT_RECORD, PRECISIONS, TrainConfig, Trainer, autocast

RUN_FILE = "run.json"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line and exit status 2."""

    def error(self, message):
        where = self.prog.removeprefix("genzoo").strip()
        raise GenzooError(f"{where}: {message}" if where else message)


# ----------------------------------------------------------------------------- argument types

def _number(kind, low=None, high=None, low_open=False):
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


def _choice(options):
    def parse(text):
        if text not in options:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(options)}, got {text!r}")
        return text
    parse.__name__ = "choice"
    return parse


def _add_model_options(parser, model_name: str) -> None:
    group = parser.add_argument_group(f"{model_name} options")
    hints = typing.get_type_hints(models.get(model_name).Config)
    for f in models.config_fields(model_name):
        if f.name in ("image_shape", "levels", "num_classes"):
            continue  # all three come from the data (num_classes through --conditional)
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(flag, dest=f"model_{f.name}", action=argparse.BooleanOptionalAction, default=None)
        elif kind in (int, float):
            group.add_argument(flag, dest=f"model_{f.name}", type=_number(kind), default=None, metavar=kind.__name__.upper(),
                               help=f"default {f.default}")
        else:
            group.add_argument(flag, dest=f"model_{f.name}", default=None, help=f"default {f.default}")


def _add_common(p):
    p.add_argument("--threads", type=_number(int, 1), help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")


def build_parser(argv) -> argparse.ArgumentParser:
    parser = _Parser(prog="genzoo", description="Deep generative models of images on one likelihood scale.")
    parser.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="models and datasets")

    t = sub.add_parser("train", help="train a model; writes a run folder")
    t.add_argument("model", nargs="?", help=f"one of: {', '.join(models.names())}")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    t.add_argument("--data", help=f"one of: {', '.join(data.names())}")
    t.add_argument("--out", metavar="DIR", help="new (or empty) run folder")
    t.add_argument("--data-dir", help="where to look for data files first")
    t.add_argument("--levels", type=_number(int, 2, 256), help="re-quantize the data to K levels")
    t.add_argument("--binarize", choices=data.BINARIZE_MODES, default=None, help="default none")
    t.add_argument("--conditional", action="store_true", help="condition on class labels (models with num_classes)")
    # Training options default to None so that --resume can tell what was given; TrainConfig fills the rest.
    d = TrainConfig()
    train_opts = t.add_argument_group("training options (defaults from TrainConfig)")
    for flag, kind, help_ in [
        ("--epochs", _number(int, 1), None), ("--minutes", _number(float, 0), "wall-clock budget over the run; 0 = none"),
        ("--batch-size", _number(int, 1), "global, over all processes"), ("--lr", _number(float, 0, low_open=True), None),
        ("--warmup-steps", _number(int, 0), None), ("--min-lr-ratio", _number(float, 0, 1), None),
        ("--grad-clip", _number(float, 0), "0 = off"), ("--weight-decay", _number(float, 0), None),
        ("--seed", _number(int, 0), None), ("--eval-batch-size", _number(int, 1), None),
        ("--eval-limit", _number(int, 0), "first N test images; 0 = all"),
        ("--checkpoint-every", _number(int, 0), "also checkpoint every N steps"),
        ("--checkpoint-minutes", _number(float, 0), "also checkpoint after this much training time; 0 = off"),
        ("--precision", _choice(PRECISIONS), "bf16: mixed-precision forward pass (GPU, or a CPU with AVX512-BF16/AMX)"),
        ("--max-bad-steps", _number(int, 1), "steps in a row with a non-finite loss or gradient (each skipped) "
                                             "that stop the run"),
    ]:
        default = getattr(d, flag[2:].replace("-", "_"))
        train_opts.add_argument(flag, type=kind, default=None, help=f"{help_ + '; ' if help_ else ''}default {default}")
    train_opts.add_argument("--compile", action="store_true", default=None, help="torch.compile the training step")
    t.add_argument("--tensorboard", action="store_true",
                   help="also write scalars and a sample grid per epoch to DIR/tensorboard (needs the tensorboard package)")
    _add_common(t)
    # The model's own options, when the model is named on the command line.
    if len(argv) >= 2 and argv[0] == "train" and argv[1] in models.names():
        _add_model_options(t, argv[1])

    e = sub.add_parser("eval", help="test NLL of a run or saved model")
    e.add_argument("dir")
    e.add_argument("--data", help="dataset (default: the run's)")
    e.add_argument("--split", default="test")
    e.add_argument("--data-dir")
    e.add_argument("--batch-size", type=_number(int, 1), default=256)
    e.add_argument("--limit", type=_number(int, 1), help="first N images only")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--precision", choices=PRECISIONS, default="fp32", help="default fp32: a bf16-trained model is scored exactly")
    e.add_argument("--iwae-k", type=_number(int, 1, 1_000_000), help="VAE: the importance-weighted bound with K samples")
    e.add_argument("--corruption", choices=CORRUPTIONS, default="none",
                   help="autoencoders: reconstruct test images corrupted this way (the error is against the clean ones)")
    e.add_argument("--noise-level", type=_number(float, 0, 1), default=0.3, help="with --corruption; default 0.3")
    _add_common(e)

    s = sub.add_parser("sample", help="draw samples into a PNG grid")
    s.add_argument("dir")
    s.add_argument("-n", type=_number(int, 1, 4096), default=64)
    s.add_argument("-o", "--output", required=True, metavar="FILE.png")
    s.add_argument("--seed", type=_number(int, 0), default=0)
    s.add_argument("--temperature", type=_number(float, 0, low_open=True), default=1.0)
    s.add_argument("--label", type=_number(int, 0), help="class for a conditional model (default: cycle)")
    s.add_argument("--scale", type=_number(int, 1, 32), help="pixel upscaling in the PNG")
    s.add_argument("--naive", action="store_true", help="autoregressive models: one full pass per sub-pixel, no cache")
    s.add_argument("--mean", action="store_true", help="VAE: the decoder's mean instead of a sample of p(x|z)")
    _add_common(s)

    c = sub.add_parser("complete", help="complete the lower part of test images (autoregressive models)")
    c.add_argument("dir")
    c.add_argument("-o", "--output", required=True, metavar="FILE.png")
    c.add_argument("-n", type=_number(int, 1, 64), default=8, help="test images to complete")
    c.add_argument("--samples", type=_number(int, 1, 16), default=4, help="completions per image")
    c.add_argument("--rows", type=_number(int, 1), help="rows kept from each image (default: half)")
    c.add_argument("--data", help="dataset (default: the run's)")
    c.add_argument("--data-dir")
    c.add_argument("--seed", type=_number(int, 0), default=0)
    c.add_argument("--naive", action="store_true", help="one full pass per sub-pixel instead of the cached sampler")
    _add_common(c)

    i = sub.add_parser("interpolate", help="decode the straight line between two test images' codes (models with encode)")
    i.add_argument("dir")
    i.add_argument("-o", "--output", required=True, metavar="FILE.png")
    i.add_argument("--pairs", type=_number(int, 1, 32), default=4, help="rows: pairs of test images")
    i.add_argument("--steps", type=_number(int, 2, 32), default=8, help="columns: points from one image to the other")
    i.add_argument("--data", help="dataset (default: the run's)")
    i.add_argument("--data-dir")
    _add_common(i)

    r = sub.add_parser("reconstruct", help="test images beside their reconstructions (models with encode and decode)")
    r.add_argument("dir")
    r.add_argument("-o", "--output", required=True, metavar="FILE.png")
    r.add_argument("-n", type=_number(int, 1, 256), default=16, help="test images")
    r.add_argument("--data", help="dataset (default: the run's)")
    r.add_argument("--data-dir")
    r.add_argument("--seed", type=_number(int, 0), default=0, help="of the corruption, for a denoising model")
    _add_common(r)

    pr = sub.add_parser("probe", help="logistic regression on frozen codes vs raw pixels, PCA, random projection")
    pr.add_argument("dir")
    pr.add_argument("--data", help="dataset (default: the run's)")
    pr.add_argument("--data-dir")
    pr.add_argument("--limit", type=_number(int, 10), help="first N training images only (default: all)")
    pr.add_argument("--json", action="store_true")
    _add_common(pr)

    rp = sub.add_parser("report", help="one self-contained HTML page comparing run folders (nothing is retrained)")
    rp.add_argument("dirs", nargs="+", metavar="DIR")
    rp.add_argument("-o", "--output", required=True, metavar="FILE.html")
    rp.add_argument("--samples", type=_number(int, 1, 256), default=16, help="samples drawn per run (default 16)")
    rp.add_argument("--seed", type=_number(int, 0), default=0)
    rp.add_argument("--ood", metavar="NAME", help="also score each run on dataset NAME's test split (same shape and levels)")
    rp.add_argument("--ood-limit", type=_number(int, 1), default=1000, help="images per set for --ood (default 1000)")
    _add_common(rp)

    y = sub.add_parser("toy", help="train a 2-D flow in seconds and plot data, density and samples")
    y.add_argument("model", choices=toy.KINDS)
    y.add_argument("--data", choices=toy.DATASETS, default="moons")
    y.add_argument("-o", "--output", required=True, metavar="FILE.png")
    y.add_argument("--steps", type=_number(int, 1, 100000), default=1500)
    y.add_argument("--seed", type=_number(int, 0), default=0)
    _add_common(y)
    return parser


# ----------------------------------------------------------------------------- helpers

def _device(name):
    try:
        dev = torch.device(name) if name else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except RuntimeError:
        raise GenzooError(f"bad --device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenzooError("--device cuda: no CUDA device here")
    return dev


def _apply_common(args):
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return _device(getattr(args, "device", None))


def _load_run(folder):
    folder = Path(folder)
    if not folder.is_dir():
        raise GenzooError(f"{folder}: no such run folder")
    model = models.load_model(folder)
    run = ckpt.read_json(folder / RUN_FILE) if (folder / RUN_FILE).exists() else {}
    return model, run


def _data_spec(args, run: dict) -> dict:
    spec = dict(run.get("data", {}))
    if getattr(args, "data", None):
        spec = {"name": args.data, "binarize": spec.get("binarize", "none"), "levels": spec.get("levels")}
    if getattr(args, "data_dir", None):
        spec["data_dir"] = args.data_dir
    if "name" not in spec:
        raise GenzooError("this model folder does not say what it was trained on: pass --data NAME")
    return spec


# ----------------------------------------------------------------------------- commands

def cmd_list(args):
    print("models:")
    for name in models.names():
        cls = models.get(name)
        print(f"  {name:22s} likelihood: {cls.likelihood_kind:5s}  {(cls.__doc__ or cls.__module__).strip().splitlines()[0]}")
    print("datasets:")
    for name, (splits, desc) in data.DATASETS.items():
        print(f"  {name:22s} {'/'.join(splits):16s} {desc}")
    return 0


def _distributed_init():
    """Join the torchrun process group, if launched by torchrun. Returns (rank, world, local_rank)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), local


# Training options --resume may change: they change when the run stops or checkpoints, never its result.
RESUMABLE_OPTIONS = ("minutes", "checkpoint_minutes")


def _given_train_options(args) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}


def _check_new_run_folder(out: Path) -> None:
    """Refuse an --out that cannot become a new run folder, before anything is read or written."""
    if out.exists():
        if not out.is_dir():
            raise GenzooError(f"--out {out}: is a file, not a folder")
        if any(out.iterdir()):
            what = "holds another run (continue it with --resume)" if (out / RUN_FILE).exists() else "is not an empty folder"
            raise GenzooError(f"--out {out}: {what}")
    parent = next(p for p in out.absolute().parents if p.exists())  # the nearest existing ancestor
    if not parent.is_dir():
        raise GenzooError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GenzooError(f"--out {out}: {parent} is not writable")


def _bf16_note(precision: str, device: torch.device) -> None:
    if precision == "bf16" and device.type == "cpu" and not (
            torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        print("genzoo: note: this CPU has no native bf16 (AVX512-BF16 or AMX): --precision bf16 is emulated "
              "here and slower than fp32", file=sys.stderr, flush=True)


def cmd_train(args):
    """Everything that can fail on the user's input is checked before the run folder is
    created; the folder then appears whole (run.json + config.json) or not at all."""
    if args.resume:
        if args.model or args.out or args.data:
            raise GenzooError("--resume DIR continues a run as it was launched: give no MODEL, --out or --data")
        out = Path(args.resume)
        if not (out / RUN_FILE).is_file():
            raise GenzooError(f"{out}: not a run folder (no {RUN_FILE})")
        run = ckpt.read_json(out / RUN_FILE)
        given = _given_train_options(args)
        fixed = sorted(set(given) - set(RESUMABLE_OPTIONS)) + [
            o for o in ("levels", "binarize", "data_dir", "conditional", "tensorboard") if getattr(args, o)]
        if fixed:
            raise GenzooError(f"--resume continues the run as launched; it cannot change --{fixed[0].replace('_', '-')} "
                              f"(only {', '.join('--' + o.replace('_', '-') for o in RESUMABLE_OPTIONS)}, --threads, --device)")
        try:
            tcfg = TrainConfig(**{**run["train"], **given})
            spec = run["data"]
            if args.threads is None and run.get("threads"):
                torch.set_num_threads(run["threads"])
        except (KeyError, TypeError):
            raise GenzooError(f"{out / RUN_FILE}: not a genzoo run record") from None
        record = ckpt.read_json(out / ckpt.CONFIG_FILE)
        tensorboard = bool(run.get("tensorboard"))
    else:
        if not args.model:
            raise GenzooError(f"train: name a model ({', '.join(models.names())}) or --resume DIR")
        models.get(args.model)
        if not args.data or not args.out:
            raise GenzooError("train: --data NAME and --out DIR are required")
        out = Path(args.out)
        _check_new_run_folder(out)
        tcfg = TrainConfig(**_given_train_options(args))
        spec = {"name": args.data, "data_dir": args.data_dir, "levels": args.levels, "binarize": args.binarize or "none"}
        tensorboard = args.tensorboard
    if tensorboard:
        tensorboard_log.require_tensorboard()
    device = _device(args.device)
    _bf16_note(tcfg.precision, device)
    rank, world, local = _distributed_init()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local)

    train_ds, levels, transform = data.prepare(spec, "train")
    test_ds, _, _ = data.prepare(spec, "test")
    torch.manual_seed(tcfg.seed)  # the initial weights are a function of --seed (a resume from step 0 rebuilds them)
    if args.resume:
        model = models.build_from_record(record, out / ckpt.CONFIG_FILE)
        data.check_fits(model, train_ds, levels)
    else:
        mcfg = {k[len("model_"):]: v for k, v in vars(args).items() if k.startswith("model_") and v is not None}
        if args.conditional:
            if "num_classes" not in {f.name for f in models.config_fields(args.model)}:
                raise GenzooError(f"{args.model} has no class-conditional variant")
            if not train_ds.num_classes:
                raise GenzooError(f"{args.data} has no labels to condition on")
            mcfg["num_classes"] = train_ds.num_classes
        model = models.build(args.model, image_shape=train_ds.image_shape, levels=levels, **mcfg)
    trainer = Trainer(model, (train_ds.images, train_ds.labels), (test_ds.images, test_ds.labels), tcfg, out,
                      batch_transform=transform, device=device, log=lambda m: print(m, flush=True))
    if rank == 0:
        if args.resume:
            if given:  # a new --minutes budget holds for later resumes too
                ckpt.atomic_write_json(out / RUN_FILE, {**run, "train": dataclasses.asdict(tcfg)})
            if not (out / CHECKPOINT_RECORD).is_file():
                print(f"{out}: no checkpoint yet (the run died before its first one): restarting from step 0", flush=True)
        else:
            ckpt.create_folder(out, {
                RUN_FILE: ckpt.json_bytes({"model": args.model, "data": spec, "train": dataclasses.asdict(tcfg),
                                           "threads": args.threads, "tensorboard": tensorboard,
                                           "genzoo_version": __version__}),
                ckpt.CONFIG_FILE: ckpt.json_bytes(models.model_config_record(model))})
        nparams = sum(p.numel() for p in model.parameters())
        print(f"{model.name}: {nparams:,} parameters; {spec['name']} {list(train_ds.image_shape)} x {len(train_ds)} train, "
              f"{len(test_ds)} test, {levels} levels; {world} process(es) on {device}, {tcfg.precision}", flush=True)
    if tensorboard and rank == 0:  # inside the run folder, so only once it exists
        resumed = ckpt.read_json(out / CHECKPOINT_RECORD)["step"] if (out / CHECKPOINT_RECORD).is_file() else 0
        trainer.on_epoch = tensorboard_log.TensorBoardLogger(model, out / "tensorboard", resume_step=resumed)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # the run folder exists before any rank trains
    trainer.fit(resume=bool(args.resume))
    if trainer.on_epoch is not None:
        trainer.on_epoch.close()
    if world > 1:
        dist.destroy_process_group()
    return 0


@torch.no_grad()
def cmd_eval(args):
    device = _apply_common(args)
    model, run = _load_run(args.dir)
    if args.iwae_k and "k" not in inspect.signature(model.log_prob).parameters:
        raise GenzooError(f"--iwae-k: {model.name} has no importance-weighted bound (the VAE does)")
    if args.corruption != "none" and not hasattr(model, "reconstruction_error"):
        raise GenzooError(f"--corruption: {model.name} is not an autoencoder")
    spec = _data_spec(args, run)
    ds, levels, _ = data.prepare(spec, args.split)
    data.check_fits(model, ds, levels)
    model.to(device)
    x, y = ds.images, ds.labels
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    batch = min(args.batch_size, 16) if args.iwae_k else args.batch_size  # K samples per image in memory
    g = torch.Generator().manual_seed(0)
    sums: dict[str, float] = {}
    for chunk in tqdm(torch.arange(len(x)).split(batch), desc="evaluating", disable=None, file=sys.stderr, leave=False):
        xb, yb = x[chunk].to(device), y[chunk].to(device)
        with autocast(device, args.precision):
            if args.iwae_k:
                figures = {"nll": -model.log_prob(xb, k=args.iwae_k, generator=g)}
            elif model.likelihood_kind == "none":
                mse = model.reconstruction_error(xb, args.corruption, args.noise_level, generator=g)
                figures = {"mse": mse, "near_zero": model.loss(xb)["near_zero"]}
            else:
                figures = {"nll": model.loss(xb, yb)["nll"]}
        for k, v in figures.items():
            sums[k] = sums.get(k, 0.0) + v.double().sum().item()
    where = f"{model.name} on {spec['name']} {args.split}"
    if model.likelihood_kind == "none":
        mse = sums["mse"] / len(x)
        s = {"likelihood_kind": "none", "count": len(x), "mse": mse, "psnr_db": 10 * math.log10(1 / max(mse, 1e-12)),
             "near_zero_fraction": sums["near_zero"] / len(x), "corruption": args.corruption}
        if args.corruption != "none":
            s["noise_level"] = args.noise_level
        text = (f"{where}: reconstruction MSE {mse:.5f} (per pixel, [0, 1] scale), PSNR {s['psnr_db']:.2f} dB"
                f"{f' from {args.corruption} corruption at {args.noise_level}' if args.corruption != 'none' else ''}; "
                f"{100 * s['near_zero_fraction']:.1f}% of code units near zero (|h| < 0.01); {len(x)} images; "
                f"no likelihood (this model defines none)")
    else:
        s = likelihood.summary(sums["nll"] / len(x), model.dims, model.likelihood_kind, len(x))
        text = f"{where}: {likelihood.describe(s)}"
        if args.iwae_k:
            s["iwae_k"] = args.iwae_k
            text += f", IWAE bound with K = {args.iwae_k}"
        elif "k" in inspect.signature(model.log_prob).parameters:
            text += ", the ELBO (analytic KL; --iwae-k K for the tighter bound)"
    s.update(model=model.name, data=spec["name"], split=args.split, precision=args.precision)
    print(json.dumps(s) if args.json else text)
    return 0


def _sampling_options(model, args) -> dict:
    if args.naive and "naive" not in inspect.signature(model.sample).parameters:
        raise GenzooError(f"--naive: {model.name} has no naive sampler (autoregressive models do)")
    return {"naive": True} if args.naive else {}


@contextlib.contextmanager
def _row_progress(model, kwargs: dict, what: str):
    """A progress bar over image rows (on a terminal only) for models whose sampler reports rows."""
    if "progress" not in inspect.signature(model.sample).parameters:
        yield
        return
    with tqdm(total=model.image_shape[1], desc=what, unit="row", disable=None, file=sys.stderr, leave=False) as bar:
        kwargs["progress"] = lambda rows: bar.update(rows - bar.n)
        yield


@torch.no_grad()
def cmd_sample(args):
    device = _apply_common(args)
    model, _ = _load_run(args.dir)
    model.to(device)
    g = torch.Generator().manual_seed(args.seed)
    kwargs = {}
    if args.temperature != 1.0:
        kwargs["temperature"] = args.temperature
    if args.label is not None:
        if not model.num_classes or args.label >= model.num_classes:
            raise GenzooError(f"--label: this model has {model.num_classes or 'no'} classes")
        kwargs["y"] = torch.full((args.n,), args.label)
    kwargs.update(_sampling_options(model, args))
    if args.mean:
        if "mean" not in inspect.signature(model.sample).parameters:
            raise GenzooError(f"--mean: {model.name} has no decoder mean (the VAE does)")
        kwargs["mean"] = True
    with _row_progress(model, kwargs, "sampling"):
        x = model.sample(args.n, generator=g, **kwargs)
    images.save_png(images.grid(x, model.levels, scale=args.scale or images.default_scale(x.shape[2])), args.output)
    print(f"wrote {args.n} samples to {args.output}")
    return 0


@torch.no_grad()
def cmd_complete(args):
    device = _apply_common(args)
    model, run = _load_run(args.dir)
    if not views.can_complete(model):
        raise GenzooError(f"{model.name} does not complete images (autoregressive models do)")
    spec = _data_spec(args, run)
    ds, levels, _ = data.prepare(spec, "test")
    data.check_fits(model, ds, levels)
    model.to(device)
    H = model.image_shape[1]
    rows = args.rows if args.rows is not None else H // 2
    if rows >= H:
        raise GenzooError(f"--rows must be below the image height {H}")
    originals = ds.images[: args.n]
    labels = ds.labels[: args.n] if model.num_classes else None
    g = torch.Generator().manual_seed(args.seed)
    kwargs = _sampling_options(model, args)
    with _row_progress(model, kwargs, "completing"):
        out, ncol = views.completions(model, originals, rows, args.samples, labels=labels, generator=g, **kwargs)
    pic = images.grid(out, model.levels, nrow=ncol, scale=images.default_scale(H))
    images.save_png(pic, args.output)
    print(f"wrote {args.n} images x {args.samples} completions (top {rows} rows kept) to {args.output}")
    return 0


@torch.no_grad()
def cmd_interpolate(args):
    images.check_png_path(args.output)
    device = _apply_common(args)
    model, ds = _latent_model_and_test_split(args, "interpolate in")
    if len(ds) < 2 * args.pairs:
        raise GenzooError(f"--pairs {args.pairs}: the test split has only {len(ds)} images")
    model.to(device)
    out, ncol = views.interpolations(model, ds.images[: 2 * args.pairs].to(device), args.steps)
    H = model.image_shape[1]
    images.save_png(images.grid(out, model.levels, nrow=ncol, scale=images.default_scale(H)), args.output)
    print(f"wrote {args.pairs} interpolations x {args.steps} steps to {args.output}")
    return 0


def _latent_model(model, what):
    if not views.has_code(model):
        raise GenzooError(f"{model.name} has no code to {what} (autoencoders, the VAE and flows do)")


def _latent_model_and_test_split(args, what):
    """The run's model (one with a code) and the test split it was trained on, checked to fit."""
    model, run = _load_run(args.dir)
    _latent_model(model, what)
    ds, levels, _ = data.prepare(_data_spec(args, run), "test")
    data.check_fits(model, ds, levels)
    return model, ds


@torch.no_grad()
def cmd_reconstruct(args):
    images.check_png_path(args.output)
    device = _apply_common(args)
    model, ds = _latent_model_and_test_split(args, "reconstruct from")
    model.to(device)
    x = ds.images[: args.n].to(device)
    pic, names = views.reconstructions(model, x, torch.Generator().manual_seed(args.seed))
    images.save_png(images.grid(pic, model.levels, nrow=len(names), scale=images.default_scale(model.image_shape[1])),
                    args.output)
    print(f"wrote {len(x)} test images x ({', '.join(names)}) to {args.output}")
    return 0


@torch.no_grad()
def cmd_probe(args):
    device = _apply_common(args)
    model, run = _load_run(args.dir)
    _latent_model(model, "probe")
    spec = _data_spec(args, run)
    train_ds, levels, _ = data.prepare(spec, "train")
    test_ds, _, _ = data.prepare(spec, "test")
    data.check_fits(model, train_ds, levels)
    if not train_ds.num_classes:
        raise GenzooError(f"{spec['name']} has no labels to probe with")
    model.to(device)
    n = args.limit or len(train_ds)

    def codes(x):
        return torch.cat([model.encode(c.to(device)).flatten(1).cpu() for c in x.split(256)]).double().numpy()

    result = probe.compare(codes(train_ds.images[:n]), train_ds.labels[:n].numpy(), codes(test_ds.images),
                           test_ds.labels.numpy(), train_ds.images[:n].flatten(1).double().numpy() / (levels - 1),
                           test_ds.images.flatten(1).double().numpy() / (levels - 1))
    result.update(model=model.name, data=spec["name"], train_images=n, test_images=len(test_ds))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"linear probe (logistic regression) on {spec['name']}: {n} train, {len(test_ds)} test images; test accuracy:")
        for name in ("codes", "raw_pixels", "pca", "random_projection"):
            r = result[name]
            print(f"  {name.replace('_', ' '):18s} width {r['width']:5d}: accuracy {r['accuracy']:.4f}")
    return 0


@torch.no_grad()
def cmd_report(args):
    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise GenzooError(f"{out}: the report must be an .html file")
    if not out.parent.is_dir():
        raise GenzooError(f"{out.parent}: no such folder for the report")
    device = _apply_common(args)
    page = report.build(args.dirs, samples=args.samples, seed=args.seed, ood=args.ood, ood_limit=args.ood_limit,
                        device=device, log=lambda m: print(m, file=sys.stderr, flush=True))
    ckpt.atomic_write_bytes(out, page.encode())
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB, {len(args.dirs)} run(s))")
    return 0


def cmd_toy(args):
    images.check_png_path(args.output)
    _apply_common(args)
    flow, nll = toy.train_toy(args.model, args.data, steps=args.steps, seed=args.seed)
    mass = toy.plot_toy(flow, args.data, args.output, seed=args.seed,
                        title=f"{args.model} on {args.data}: {args.steps} steps, train NLL {nll:.3f} nats")
    print(f"{args.model} on {args.data}: train NLL {nll:.3f} nats/point after {args.steps} steps; "
          f"density mass on the plotted grid {mass:.3f}; wrote {args.output}")
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "complete": cmd_complete,
            "interpolate": cmd_interpolate, "reconstruct": cmd_reconstruct, "probe": cmd_probe, "report": cmd_report,
            "toy": cmd_toy}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        if args.command == "train":
            _apply_common(args)
        return COMMANDS[args.command](args)
    except GenzooError as e:
        print(f"genzoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genzoo: interrupted (a training run continues with: genzoo train --resume DIR)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
