"""Sample quality beside likelihood (Theis et al. 2016: the two can disagree): Frechet and kernel
distances, improved precision and recall, and a memorisation check, all measured in the features
of a small network trained on the dataset's own training split.

* The feature network (:class:`FeatureNet`, 64 features): a classifier of the dataset's labels,
  or, for unlabelled data (static binarized MNIST, colour MNIST, folders without classes), an
  autoencoder whose code is the feature. Trained with a fixed seed, cached in
  ``~/.cache/genzoo/features/`` with its test accuracy (or reconstruction error); Inception
  features do not fit 28 x 28 digits, so this is the usual practice for MNIST-like data.
* FID and KID: torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` given
  that network (the matrix square root is theirs).
* Precision and recall (Kynkaanniemi et al. 2019): a sample is precise if it falls inside the
  k-nearest-neighbour ball (k = 3) of some real image in feature space; a real image is recalled
  if it falls inside the ball of some sample.
* Memorisation: each sample's feature distance to its nearest training image. Every figure is
  also given for held-out real test images against the reference test images: the floor a
  perfect model would reach with the same N.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoint as ckpt
from . import scoring
from ..errors import GenzooError
from ..models.base import to_unit

FEATURES = 64
K_NEAREST = 3
TRAIN_STEPS, BATCH, SEED = 500, 128, 0


class FeatureNet(nn.Module):
    """uint8 images [B, C, H, W] with ``levels`` levels -> features [B, 64]: three 3x3 convolutions
    (the last two stride 2), a 2x2 average pool, a linear layer. ``head`` classifies (labels) or
    decodes the image (no labels) while it trains."""

    def __init__(self, image_shape, levels: int, num_classes: int):
        super().__init__()
        C, H, W = image_shape
        self.levels, self.num_features, self.labelled = levels, FEATURES, num_classes > 0
        self.body = nn.Sequential(
            nn.Conv2d(C, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # (B, 64, H/2, W/2)
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),  # (B, 64, H/4, W/4)
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, FEATURES))
        out = num_classes if num_classes else C * H * W
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(FEATURES, out))
        # After training, features are standardised on the training images (each dimension mean 0,
        # std 1), so FID and KID come on a scale that does not depend on the network's weights.
        self.register_buffer("shift", torch.zeros(FEATURES))
        self.register_buffer("scale", torch.ones(FEATURES))

    def raw(self, x):
        return self.body(to_unit(x, self.levels))

    def forward(self, x):
        return (self.raw(x) - self.shift) / self.scale


def _key(spec: dict, image_shape, levels: int) -> str:
    text = json.dumps({"v": 1, "data": {k: spec.get(k) for k in ("name", "levels", "binarize", "image_size",
                                                                  "grayscale")},
                       "shape": list(image_shape), "levels": levels}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _train(net: FeatureNet, train, test, log) -> dict:
    """Train the feature network (seeded, leaves the global RNG as it was); its test score."""
    labelled = net.labelled
    with torch.random.fork_rng(), torch.enable_grad():  # callers may score under no_grad
        torch.manual_seed(SEED)
        opt = torch.optim.Adam(net.parameters(), 2e-3)
        for step in range(TRAIN_STEPS):
            idx = torch.randint(0, len(train), (min(BATCH, len(train)),))
            x = train.images[idx]
            out = net.head(net.raw(x))
            loss = (F.cross_entropy(out, train.labels[idx]) if labelled
                    else F.mse_loss(torch.sigmoid(out), to_unit(x, net.levels).flatten(1)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 200 == 0:
                log(f"quality: training the feature network, step {step} of {TRAIN_STEPS}, loss {loss.item():.4f}")
    net.eval()
    with torch.no_grad():
        seen = torch.cat([net.raw(c) for c in train.images[:5000].split(512)])
        net.shift.copy_(seen.mean(0))
        net.scale.copy_(seen.std(0).clamp(min=1e-6))
        x = test.images[: 2000]
        out = net.head(net.raw(x))
        if labelled:
            return {"kind": "classifier", "test_accuracy": (out.argmax(1) == test.labels[: 2000]).float().mean().item()}
        mse = F.mse_loss(torch.sigmoid(out), to_unit(x, net.levels).flatten(1)).item()
        return {"kind": "autoencoder", "test_mse": mse}


def feature_network(spec: dict, train, test, levels: int, cache_root: Path, log=lambda m: None):
    """(the dataset's feature network in eval mode, its record), trained once and cached."""
    labelled = bool(train.num_classes) and int(train.labels.min()) >= 0
    net = FeatureNet(train.image_shape, levels, train.num_classes if labelled else 0)
    stem = cache_root / _key(spec, train.image_shape, levels)
    if stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file():
        ckpt.load_state_into(net, ckpt.load_weights(stem.with_suffix(".safetensors")), stem)
        return net.eval(), ckpt.read_json(stem.with_suffix(".json"))
    record = {**_train(net, train, test, log), "steps": TRAIN_STEPS, "seed": SEED, "data": spec.get("name")}
    cache_root.mkdir(parents=True, exist_ok=True)
    ckpt.save_weights(stem.with_suffix(".safetensors"), net.state_dict())
    ckpt.atomic_write_json(stem.with_suffix(".json"), record)
    return net, record


@torch.no_grad()
def features(net: FeatureNet, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(c) for c in x.split(512)]).double()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = K_NEAREST) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of feature sets [N, d] and [M, d]."""
    def radii(a):  # distance of each point to its k-th nearest neighbour in its own set (itself excluded)
        return torch.cdist(a, a).kthvalue(k + 1, dim=1).values

    d = torch.cdist(fake, real)  # (M, N)
    precision = (d <= radii(real)[None, :]).any(1).double().mean().item()
    recall = (d.t() <= radii(fake)[None, :]).any(1).double().mean().item()
    return precision, recall


def frechet_and_kernel(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """FID and KID (mean, std over subsets) between uint8 image sets, through torchmetrics with ``net``."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore")  # KID's note that it keeps every feature in memory
        torch.manual_seed(SEED)  # KID's random subsets
        fid = FrechetInceptionDistance(feature=net)
        # subsets of half of each set (at most 1000): subsets of the whole set would all be the same one,
        # and KID's std over them would say nothing
        kid = KernelInceptionDistance(feature=net, subsets=50, subset_size=max(2, min(1000, len(real) // 2,
                                                                                      len(fake) // 2)))
        for metric in (fid, kid):
            for c in real.split(512):
                metric.update(c, real=True)
            for c in fake.split(512):
                metric.update(c, real=False)
        kid_mean, kid_std = kid.compute()
        return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def figures(net, reference: torch.Tensor, candidate: torch.Tensor, train_features: torch.Tensor) -> dict:
    """Every quality figure of ``candidate`` images against ``reference`` images."""
    ref, cand = features(net, reference), features(net, candidate)
    precision, recall = precision_recall(ref, cand)
    nearest = torch.cdist(cand, train_features).min(1).values
    return {**frechet_and_kernel(net, reference, candidate), "precision": precision, "recall": recall,
            "nn_train_distance": nearest.mean().item()}


def reference_split(test, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, held-out): two disjoint seeded, class-stratified sets of min(n, len(test) // 2) test images."""
    m = min(n, len(test) // 2)  # reference and held-out images each
    if m < 10:
        raise GenzooError(f"--fid: the test split has {len(test)} images; at least 20 are needed")
    order = scoring.subset(test.labels, 2 * m)
    perm = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))]
    return test.images[perm[:m]], test.images[perm[m:2 * m]]


@torch.no_grad()
def draw(model, n: int, generator, **options) -> torch.Tensor:
    """n samples [n, C, H, W] on the CPU, in chunks of 256 from one generator (memory stays bounded)."""
    return torch.cat([model.sample(len(c), generator=generator, **options).cpu() for c in torch.arange(n).split(256)])


@torch.no_grad()
def measure(model, n: int, net, test, train, seed: int = 0, log=lambda m: None, **options) -> dict:
    """Draw n samples and measure them against n seeded test images (the reference); the same figures
    for n other, held-out test images are the floor. A test split smaller than 2n is halved into the
    reference and the held-out images (sizes returned). train: the training split, for memorisation."""
    if not model.can_sample:
        raise GenzooError(f"--fid: {model.name} defines no distribution to sample from (it has no sampler)")
    reference, held_out = reference_split(test, n, seed)
    log(f"quality: drawing {n} samples")
    samples = draw(model, n, torch.Generator().manual_seed(seed), **options)  # options: the sampler's (steps, ddim)
    train_features = features(net, train.images)
    out = figures(net, reference, samples, train_features)
    out["floor"] = figures(net, reference, held_out, train_features)
    return {**out, "fid_n": n, "reference_n": len(reference)}
