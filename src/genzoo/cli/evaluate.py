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
from ..models.latent.autoencoders import CORRUPTIONS
from ..models.base import to_unit
from ..training.precision import PRECISIONS, autocast
from .common import (open_run, add_data_options, add_device_options, add_run_dir, add_sampler_options,
                     apply_device_options,
                     checked_split, latent_run, number, sampling_options, spec_of)


def add_parsers(sub, argv) -> None:
    e = sub.add_parser("eval", help="test NLL of runs or saved models (reconstruction error for autoencoders)")
    add_run_dir(e, several=True)
    add_data_options(e)
    e.add_argument("--split", default="test", help="the split to score (test; binarized-mnist also has valid; train)")
    e.add_argument("--batch-size", type=number(int, 1), default=256, help="images per forward pass (16 with --iwae-k)")
    e.add_argument("--limit", type=number(int, 0), default=0,
                   help="score a fixed, seeded random subset of N images (stratified by class); 0 = all")
    e.add_argument("--json", action="store_true", help="print one JSON object per run")
    e.add_argument("--precision", choices=PRECISIONS, default="fp32", help="a bf16-trained model is scored exactly in "
                                                                           "fp32")
    e.add_argument("--iwae-k", type=number(int, 1, 1_000_000), help="VAE: the importance-weighted bound with K samples")
    e.add_argument("--t-samples", type=number(int, 1, 100_000), metavar="K",
                   help="diffusion: average the bound over K stratified times per image, with its terms and the "
                        "Monte-Carlo standard error (default: one time per image, the training estimate)")
    e.add_argument("--corruption", choices=CORRUPTIONS, default="none",
                   help="autoencoders: reconstruct test images corrupted this way (the error is against the clean "
                        "ones)")
    e.add_argument("--fid", type=number(int, 10, 5000), metavar="N",
                   help="also draw N samples and add sample quality: FID, KID, precision, recall and the nearest "
                        "training image, in a feature network trained on the dataset (and the same for N held-out "
                        "test images: the floor)")
    add_sampler_options(e)  # with --fid: how the samples are drawn
    e.add_argument("--noise-level", type=number(float, 0, 1), default=None,
                   help="with --corruption: gaussian std or fraction of pixels (default 0.3)")
    add_device_options(e)
    e.set_defaults(run=run_eval)

    pr = sub.add_parser("probe", help="logistic regression on frozen codes vs raw pixels, PCA, random projection")
    add_run_dir(pr)
    add_data_options(pr)
    pr.add_argument("--limit", type=number(int, 10), help="first N training images only (default: all)")
    pr.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_device_options(pr)
    pr.set_defaults(run=run_probe)


def _figures(args):
    """The per-image figures this eval asks for: the IWAE bound, reconstruction error, or the model's own nll."""
    g = torch.Generator().manual_seed(0)

    def figures(model, x, y):
        if args.iwae_k:
            return {"nll": -model.log_prob(x, k=args.iwae_k, generator=g)}
        if model.monte_carlo_bound:  # the bound with its terms, and each image's Monte-Carlo variance
            return model.estimate(x, y, args.t_samples or 1, generator=g)
        if model.scored_by_reconstruction:
            return {"mse": model.reconstruction_error(x, args.corruption, args.noise_level, generator=g),
                    "near_zero": model.loss(x)["near_zero"]}
        out = model.loss(x, y)
        return {"nll": out["nll"], **{t: out[t] for t in model.bound_terms}}
    return figures


def _reconstruction_result(args, model, means: dict, count: int, where: str) -> tuple[dict, str]:
    mse = means["mse"]
    s = {"likelihood_kind": "none", "count": count, "mse": mse, "psnr_db": 10 * math.log10(1 / max(mse, 1e-12)),
         "near_zero_fraction": means["near_zero"], "corruption": args.corruption}
    corrupted = args.corruption != "none"
    if corrupted:
        s["noise_level"] = args.noise_level
    text = (f"{where}: reconstruction MSE {mse:.5f} (per pixel, [0, 1] scale), PSNR {s['psnr_db']:.2f} dB"
            f"{f' from {args.corruption} corruption at {args.noise_level}' if corrupted else ''}; "
            f"{100 * s['near_zero_fraction']:.1f}% of code units near zero (|h| < 0.01); {count} images; "
            f"no likelihood (this model defines none)")
    return s, text


def _likelihood_result(args, model, means: dict, count: int, where: str) -> tuple[dict, str]:
    s = likelihood.summary(means["nll"], model.dims, model.likelihood_kind, count, conditional=bool(model.num_classes))
    text = f"{where}: {likelihood.describe(s)}"
    if model.monte_carlo_bound:
        k = args.t_samples or 1
        s.update(t_samples=k, terms={t: means[t] for t in ("prior", "reconstruction", "diffusion")})
        text += (f", {k} time(s) per image: prior {means['prior']:.3f} + reconstruction "
                 f"{means['reconstruction']:.3f} + diffusion {means['diffusion']:.3f}")
        if k > 1:  # the estimate's Monte-Carlo standard error over the test set (the images themselves are fixed)
            s["standard_error"] = math.sqrt(means["nll_var"] / k / count)
            text += f", Monte-Carlo standard error {s['standard_error']:.3f}"
    if model.bound_terms:
        s["terms"] = {t: means[t] for t in model.bound_terms}
        text += ": " + " + ".join(f"{t} {means[t]:.3f}" for t in model.bound_terms)
    if args.iwae_k:
        s["iwae_k"] = args.iwae_k
        text += f", IWAE bound with K = {args.iwae_k}"
    elif model.importance_weighted and model.loss_k > 1:  # the bound it trained on: IWAE_K, not the ELBO
        s["iwae_k"] = model.loss_k
        text += f", IWAE bound with K = {model.loss_k} (its training objective; --iwae-k K for a tighter one)"
    elif model.importance_weighted:
        text += ", the ELBO (analytic KL; --iwae-k K for the tighter bound)"
    return s, text


def _check_eval_options(args) -> None:
    if args.noise_level is not None and args.corruption == "none":
        raise GenzooError("--noise-level needs --corruption gaussian|masking|salt-pepper (it sets that corruption's "
                          "strength); without --corruption the clean images are scored")
    if args.noise_level is None:
        args.noise_level = 0.3
    if not args.fid and (args.steps is not None or args.ddim or args.guidance is not None):
        raise GenzooError("--steps, --ddim and --guidance choose how eval --fid N draws its samples; without --fid "
                          "eval draws none")


def _check_model(args, model, test) -> None:
    """Everything a request can fail on, for every run, before any run is scored or any network trained."""
    if args.fid and not model.can_sample:
        raise GenzooError(f"--fid: {model.name} defines no distribution to sample from (it has no sampler)")
    if args.fid:
        sampling_options(model, args)  # a sampler option this model does not take: refused before any scoring
    if args.fid and len(test) < 20:
        raise GenzooError(f"--fid: the test split has {len(test)} images; at least 20 are needed")
    if args.t_samples and not model.monte_carlo_bound:
        raise GenzooError(f"--t-samples: {model.name} has no bound sampled over time (diffusion does)")
    if args.iwae_k and not model.importance_weighted:
        raise GenzooError(f"--iwae-k: {model.name} has no importance-weighted bound (the VAE does)")
    if args.corruption != "none" and not model.scored_by_reconstruction:
        raise GenzooError(f"--corruption: {model.name} is not an autoencoder")


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
    try:
        weights = {"weights": "ema"} if getattr(run.model, "weights", "raw") == "ema" else {}
        runs.append_eval(run.folder, {**result, **weights,
                                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds")})
    except GenzooError as e:
        print(f"genzoo: note: the result is not kept in the run folder ({e})", file=sys.stderr)


def measure(args, run: runs.Run, ds, device) -> tuple[dict, str]:
    """Score one run on its split (or its seeded subset): the JSON record and the line to print."""
    model, spec = run.model.to(device), spec_of(run, args)
    idx = scoring.subset(ds.labels, args.limit)
    x, y = ds.images[idx], ds.labels[idx]
    batch = min(args.batch_size, 16) if args.iwae_k else args.batch_size  # K samples per image in memory
    per_image = scoring.per_image(model, x, y, batch, _figures(args), device=device,
                                  context=lambda: autocast(device, args.precision), progress="evaluating")
    means = {k: v.sum().item() / len(x) for k, v in per_image.items()}
    where = f"{model.name} on {spec['name']} {args.split}"
    if len(x) < len(ds):
        where += f" (a seeded random subset of {len(x)} of {len(ds)} images)"
    result = _reconstruction_result if model.scored_by_reconstruction else _likelihood_result
    s, text = result(args, model, means, len(x), where)
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

    def pixels(x):
        return to_unit(x.flatten(1), model.levels, torch.float64).numpy()

    print(f"probe: encoding {n} train and {len(test_ds)} test images", file=sys.stderr, flush=True)
    result = probe.compare_to_baselines(codes(train_ds.images[:n]), train_ds.labels[:n].numpy(), codes(test_ds.images),
                           test_ds.labels.numpy(), pixels(train_ds.images[:n]), pixels(test_ds.images),
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
