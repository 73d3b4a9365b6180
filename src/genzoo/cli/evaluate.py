"""``genzoo eval DIR`` (test NLL, or reconstruction error) and ``genzoo probe DIR`` (linear probes on codes)."""

from __future__ import annotations

import datetime
import json
import math
import sys

import torch

from .. import data, likelihood, runs
from ..evaluation import probe, quality, scoring
from ..errors import GenzooError
from ..models.base import to_unit
from ..training.precision import PRECISIONS, autocast
from .common import (add_data_options, add_device_options, add_model_options, add_run_dir, apply_device_options,
                     checked_split, eval_options, given_options, latent_run, number, open_run, sampling_options,
                     spec_of)
from . import COMMANDS


def add_parsers(sub, argv) -> None:
    e = sub.add_parser("eval", help=COMMANDS["eval"][1])
    add_run_dir(e, several=True)
    add_data_options(e)
    e.add_argument("--split", default="test", help="the split to score (test; binarized-mnist also has valid; train)")
    e.add_argument("--batch-size", type=number(int, 1), default=256, help="images per forward pass (a model whose "
                                                                          "estimator holds many samples per image "
                                                                          "splits it further)")
    e.add_argument("--limit", type=number(int, 0), default=0,
                   help="score a fixed, seeded random subset of N images (stratified by class); 0 = all")
    e.add_argument("--json", action="store_true", help="print one JSON object per run")
    e.add_argument("--precision", choices=PRECISIONS, default="fp32", help="a bf16-trained model is scored exactly in "
                                                                           "fp32")
    add_model_options(e, "EvalOptions", "estimator options (the model's own; a model refuses one it does not take)")
    e.add_argument("--fid", type=number(int, 10, 5000), metavar="N",
                   help="also draw N samples and add sample quality: FID, KID, precision, recall and the nearest "
                        "training image, in a feature network trained on the dataset (and the same for N held-out "
                        "test images: the floor)")
    add_model_options(e, "SampleOptions", "with --fid: how the samples are drawn (the model's own sampling options)")
    add_device_options(e)
    e.set_defaults(run=run_eval)

    pr = sub.add_parser("probe", help=COMMANDS["probe"][1])
    add_run_dir(pr)
    add_data_options(pr)
    pr.add_argument("--limit", type=number(int, 10), help="first N training images only (default: all)")
    pr.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_device_options(pr)
    pr.set_defaults(run=run_probe)


def _figures(options: dict):
    """The per-image figures of a model's eval_figures with its estimator options (seeded: reproducible)."""
    g = torch.Generator().manual_seed(0)

    def figures(model, x, y):
        return model.eval_figures(x, y, generator=g, **options)
    return figures


def _reconstruction_result(options, model, means: dict, count: int, where: str) -> tuple[dict, str]:
    mse, corruption = means["mse"], options.get("corruption", "none")
    s = {"likelihood_kind": "none", "count": count, "mse": mse, "psnr_db": 10 * math.log10(1 / max(mse, 1e-12)),
         "near_zero_fraction": means["near_zero"], "corruption": corruption}
    corrupted = corruption != "none"
    if corrupted:
        s["noise_level"] = options["noise_level"]
    how = f" from {corruption} corruption at {options['noise_level']}" if corrupted else ""
    text = (f"{where}: reconstruction MSE {mse:.5f} (per dimension, [0, 1] scale), PSNR {s['psnr_db']:.2f} dB{how}; "
            f"{100 * s['near_zero_fraction']:.1f}% of code units near zero (|h| < 0.01); {count} images; "
            f"no likelihood (this model defines none)")
    return s, text


def _likelihood_result(options, model, means: dict, count: int, where: str) -> tuple[dict, str]:
    s = likelihood.summary(means["nll"], model.dims, model.likelihood_kind, count, conditional=bool(model.num_classes))
    text = f"{where}: {likelihood.describe(s)}"
    entries, words = model.eval_summary(options, means, count)
    if model.bound_terms:
        s["terms"] = {t: means[t] for t in model.bound_terms}
        text += ": " + " + ".join(f"{t} {means[t]:.3f}" for t in model.bound_terms)
    s.update(entries)
    return s, text + words


def _check_eval_options(args) -> None:
    sampling = given_options(args, "SampleOptions")
    if sampling and not args.fid:
        raise GenzooError(f"{', '.join(sampling)} choose how eval --fid N draws its samples; without --fid eval draws "
                          f"none")


def _check_model(args, model, test) -> None:
    """Everything a request can fail on, for every run, before any run is scored or any network trained."""
    if args.fid and not model.can_sample:
        raise GenzooError(f"--fid: {model.name} defines no distribution to sample from (it has no sampler)")
    if args.fid:
        sampling_options(model, args)  # a sampler option this model does not take: refused before any scoring
    if args.fid and len(test) < 20:
        raise GenzooError(f"--fid: the test split has {len(test)} images; at least 20 are needed")
    eval_options(model, args)  # an estimator option this model does not take, or a bad combination: refused here


@torch.no_grad()
def run_eval(args) -> int:
    _check_eval_options(args)
    device = apply_device_options(args)
    opened = [open_run(args, d) for d in args.dirs]  # every folder and option checked before any scoring
    splits = []
    for run in opened:
        splits.append(checked_split(run, args, args.split))
        _check_model(args, run.model, splits[-1])
    for run, ds in zip(opened, splits):
        s, text = measure(args, run, ds, device)
        print(json.dumps(s) if args.json else (f"{run.name}: {text}" if len(opened) > 1 else text), flush=True)
        _keep(run, s)
    return 0


def _quality(args, run: runs.Run, model, test) -> dict:
    """Sample-quality figures in the dataset's feature network (trained once, cached)."""
    def log(m):
        print(m, file=sys.stderr, flush=True)

    spec = spec_of(run, args)
    train = data.seen_training_split(spec)  # dynamic binarization: one fixed draw of the training images
    net, record = quality.feature_network(spec, train, test, train.levels, data.cache_dir() / "features", log)
    options = sampling_options(model, args)
    out = quality.measure(model, args.fid, net, test, train, seed=0, log=log, **options)
    return {**out, "feature_network": record, **({"sampler": options} if options else {})}


def _keep(run: runs.Run, result: dict) -> None:
    """Keep the result in a run folder's evals.jsonl (the report shows the tightest); a folder that
    cannot be written (read-only, say) keeps nothing and says so, the result stands."""
    if not run.record:
        return  # a bare model folder, not a run
    if runs.is_shipped(run.folder):
        print(f"genzoo: note: {run.name} is a shipped model: this figure is not kept in its folder (only genzoo verify "
              f"--write-card writes there)", file=sys.stderr)
        return
    try:
        which = {"weights": "ema"} if getattr(run.model, "weights", "raw") == "ema" else {}
        step = runs.committed_step(run.folder)  # the figure is of the weights of this step (a resume moves them)
        which.update({} if step is None else {"step": step})
        runs.append_eval(run.folder, {**result, **which,
                                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds")})
    except GenzooError as e:
        print(f"genzoo: note: the result is not kept in the run folder ({e})", file=sys.stderr)


def _fitted(args, run: runs.Run, model, options: dict, device) -> dict:
    """The estimator options a model fits on held-out images before scoring (``held_out_images``): a seeded subset
    of the valid split where the data has one, else of the training split; never the test split."""
    n = model.held_out_images(options)
    if not n:
        return {}
    spec = spec_of(run, args)
    split = "valid" if "valid" in data.DATASETS.get(spec["name"], ((),))[0] and args.split != "valid" else "train"
    held = checked_split(run, args, split)
    idx = scoring.subset(held.labels, n)
    print(f"eval: fitting the estimator on {len(idx)} images of the {split} split", file=sys.stderr, flush=True)
    y = held.labels[idx].to(device) if model.num_classes else None
    return model.fit_estimator(held.images[idx].to(device), options, y)


def measure(args, run: runs.Run, ds, device) -> tuple[dict, str]:
    """Score one run on its split (or its seeded subset): the JSON record and the line to print."""
    model, spec = run.model.to(device), spec_of(run, args)
    idx = scoring.subset(ds.labels, args.limit)
    x, y = ds.images[idx], ds.labels[idx]
    options = eval_options(model, args)
    options.update(_fitted(args, run, model, options, device))
    per_image = scoring.per_image(model, x, y, args.batch_size, _figures(options), device=device,
                                  context=lambda: autocast(device, args.precision), progress="evaluating")
    means = {k: v.sum().item() / len(x) for k, v in per_image.items()}
    where = f"{model.name} on {spec['name']} {args.split}"
    if len(x) < len(ds):
        where += f" (a seeded random subset of {len(x)} of {len(ds)} images)"
    result = _reconstruction_result if model.scored_by_reconstruction else _likelihood_result
    s, text = result(options, model, means, len(x), where)
    if len(x) < len(ds) and "nll" in per_image and len(x) > 1:  # a subset's mean is an estimate of the whole's
        s["subset_standard_error"] = per_image["nll"].double().std().item() / math.sqrt(len(x))
        text += (f"; standard error {s['subset_standard_error']:.3f} nats over the subset's images (the full test set "
                 f"is the figure to quote)")
    if args.fid:
        s["quality"] = _quality(args, run, model, ds)
        q = s["quality"]
        against = (f"{q['reference_n']} test images (the split holds {len(ds)}: {q['reference_n']} are the "
                   f"reference, {q['reference_n']} others the floor)" if q["reference_n"] < q["fid_n"]
                   else f"{q['reference_n']} test images")
        how = f" ({', '.join(f'{k} {v}' for k, v in q['sampler'].items())})" if "sampler" in q else ""
        text += (f"; {q['fid_n']} samples{how} against {against}: FID {q['fid']:.3f} (held-out floor "
                 f"{q['floor']['fid']:.3f}), "
                 f"KID {q['kid']:.4f}, precision {q['precision']:.3f}, recall {q['recall']:.3f}, nearest training "
                 f"image {q['nn_train_distance']:.3f} (floor {q['floor']['nn_train_distance']:.3f})")
    s.update(model=model.name, data=spec["name"], split=args.split, precision=args.precision, run=run.name)
    if len(x) < len(ds):
        s.update(subset_of=len(ds), subset_seed=0)
    return s, text


@torch.no_grad()
def run_probe(args) -> int:
    device = apply_device_options(args)
    run = latent_run(args, "probe")
    model, spec = run.model, spec_of(run, args)
    train_ds = checked_split(run, args, "train")
    test_ds = checked_split(run, args, "test")
    if not train_ds.num_classes:
        raise GenzooError(f"{spec['name']} has no labels to probe with")
    model.to(device)
    n = args.limit or len(train_ds)
    for split, labels in (("training images" + (f" (the first {n})" if args.limit else ""), train_ds.labels[:n]),
                          ("test images", test_ds.labels)):
        if len(labels.unique()) < 2:
            raise GenzooError(f"probe: the {split} of {spec['name']} hold one class only; a classifier needs two "
                              f"or more" + (" (a larger --limit takes more)" if args.limit and "training" in split
                                            else ""))

    def codes(x):
        return torch.cat([model.encode(c.to(device)).flatten(1).cpu() for c in x.split(256)]).double().numpy()

    def flattened(x):
        return to_unit(x.flatten(1), model.levels, torch.float64).numpy()

    print(f"probe: encoding {n} train and {len(test_ds)} test images", file=sys.stderr, flush=True)
    result = probe.compare_to_baselines(codes(train_ds.images[:n]), train_ds.labels[:n].numpy(), codes(test_ds.images),
                           test_ds.labels.numpy(), flattened(train_ds.images[:n]), flattened(test_ds.images),
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    result.update(model=model.name, data=spec["name"], train_images=n, test_images=len(test_ds))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"linear probe (logistic regression) on {spec['name']}: {n} train, {len(test_ds)} test images; test "
          f"accuracy:")
    for name in ("codes", "raw_pixels", "pca", "random_projection"):
        r = result[name]
        print(f"  {name.replace('_', ' '):18s} width {r['width']:5d}: accuracy {r['accuracy']:.4f}")
    return 0
