"""Masked (absorbing-state) diffusion: its bound in closed form on tiny images (the any-order autoregressive average
over every mask), the sampled estimate against it, the bound exact with exact conditionals, Gibbs and
sub-normalisation, samples of the exact conditionals following p, completion."""

import itertools
import math

import pytest
import torch

import genzoo
from conftest import all_images
import conftest

TINY = conftest.TINY["masked-diffusion"]


def build(image_shape=(1, 1, 3), levels=3, seed=0, **kw):
    torch.manual_seed(seed)
    return genzoo.models.build("masked-diffusion", image_shape=image_shape, levels=levels, **{**TINY, **kw})


def exact_bound(model, x):
    """The bound of one image x [C, H, W] in closed form: the sum over every mask M of the D sub-pixels of
    (|M| - 1)! (D - |M|)! / D! times sum_{i in M} -log p(x_i | x outside M) (module docstring), float64."""
    D = x.numel()
    masks = torch.tensor(list(itertools.product([False, True], repeat=D))[1:]).view(-1, *x.shape)  # (2^D - 1, ..)
    xs = x.expand(len(masks), *x.shape)
    with torch.no_grad():
        nll = model.masked_nll(xs, masks).double()
    m = masks.flatten(1).sum(1)
    weight = torch.tensor([math.factorial(k - 1) * math.factorial(D - k) / math.factorial(D) for k in m.tolist()],
                          dtype=torch.float64)
    return (weight * nll).sum().item()


def oracle(model, images, probs):
    """The exact conditionals p(x_i | the unmasked sub-pixels) of data drawn from ``probs`` over ``images``."""
    flat = images.flatten(1).long()  # (M, D)

    def conditionals(x, mask, y=None):
        B, k = x.shape[0], model.levels
        agree = ((flat[None] == x.flatten(1)[:, None].long()) | mask.flatten(1)[:, None]).all(-1)  # (B, M)
        w = probs[None] * agree  # the posterior over the listed images given what is unmasked
        onehot = torch.nn.functional.one_hot(flat, k).double()  # (M, D, k)
        p = torch.einsum("bm,mdk->bdk", w / w.sum(1, keepdim=True), onehot)  # (B, D, k)
        return p.clamp_min(1e-300).log().transpose(1, 2).reshape(B, k, *x.shape[1:])
    return conditionals


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_the_sampled_bound_agrees_with_its_closed_form(schedule):
    model = build(schedule=schedule).double().eval()
    for p in model.net.out.parameters():  # conditionals that are not uniform
        torch.nn.init.normal_(p, std=0.5, generator=torch.Generator().manual_seed(1))
    x = torch.tensor([[[[0, 2, 1]]]], dtype=torch.uint8)
    exact = exact_bound(model, x[0])
    est = model.estimate(x.expand(64, -1, -1, -1), t_samples=64, generator=torch.Generator().manual_seed(2))
    mean, se = est["nll"].mean().item(), (est["nll_var"].mean() / 64 / 64).sqrt().item()
    assert abs(mean - exact) < 5 * se + 1e-6, (mean, exact, se)


def test_with_exact_conditionals_the_bound_is_exact_so_it_averages_to_the_entropy():
    images = all_images((1, 1, 3), 2)
    probs = torch.tensor([0.3, 0.05, 0.1, 0.05, 0.2, 0.05, 0.1, 0.15], dtype=torch.float64)
    model = build(levels=2).double().eval()
    model.conditionals = oracle(model, images, probs)
    bounds = torch.tensor([exact_bound(model, x) for x in images], dtype=torch.float64)
    assert torch.allclose(bounds, -probs.log(), atol=1e-9)  # -log P(x), every image, whatever the order


@pytest.mark.parametrize("trained", [False, True])
def test_the_bound_keeps_gibbs_and_sub_normalisation(trained):
    # E_p[B] >= H(p) and sum_x exp(-B(x)) <= 1 for any network (B averages normalised any-order models), before
    # and after training on a known tiny distribution
    images = all_images((1, 1, 3), 2)
    probs = torch.tensor([0.3, 0.05, 0.1, 0.05, 0.2, 0.05, 0.1, 0.15], dtype=torch.float64)
    model = build(levels=2)
    if trained:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(150):
            batch = images[torch.multinomial(probs, 64, replacement=True, generator=g)]
            opt.zero_grad()
            model.loss(batch)["loss"].backward()
            opt.step()
    model = model.double().eval()
    bounds = torch.tensor([exact_bound(model, x) for x in images], dtype=torch.float64)
    entropy = -(probs * probs.log()).sum().item()
    assert (probs * bounds).sum().item() >= entropy - 1e-9
    assert torch.exp(-bounds).sum().item() <= 1 + 1e-9
    if trained:  # and training moved it toward p: well below the uniform model's 3 log 2
        assert (probs * bounds).sum().item() < 3 * math.log(2) - 0.05


def test_one_sub_pixel_a_step_with_exact_conditionals_draws_the_known_distribution():
    from scipy.stats import chisquare

    images = all_images((1, 1, 3), 2)
    probs = torch.tensor([0.3, 0.05, 0.1, 0.05, 0.2, 0.05, 0.1, 0.15], dtype=torch.float64)
    model = build(levels=2).double().eval()
    model.conditionals = oracle(model, images, probs)
    x = model.sample(4000, generator=torch.Generator().manual_seed(0), steps=3)  # S = D: any-order draws
    index = (x.flatten(1).long() * torch.tensor([4, 2, 1])).sum(1)
    counts = torch.bincount(index, minlength=8).double()
    assert chisquare(counts.numpy(), (4000 * probs).numpy()).pvalue > 1e-3, counts.tolist()


def test_completion_keeps_the_known_sub_pixels_and_draws_the_rest():
    model = build((1, 4, 4), levels=3).eval()
    x = torch.randint(0, 3, (6, 1, 4, 4), dtype=torch.uint8)
    known = torch.zeros(1, 4, 4, dtype=torch.bool)
    known[:, :2] = True
    out = model.complete(x, known, generator=torch.Generator().manual_seed(0), steps=4)
    assert torch.equal(out[:, :, :2], x[:, :, :2]) and not torch.equal(out, x)
    assert torch.equal(out, model.complete(x, known, generator=torch.Generator().manual_seed(0), steps=4))


def test_the_command_line_trains_evaluates_with_its_standard_error_samples_and_completes(tmp_path, capsys):
    from genzoo.cli import main

    run = tmp_path / "md"
    assert main(["train", "masked-diffusion", "--data", "digits", "--out", str(run), "--epochs", "1",
                 "--batch-size", "100", "--channels", "8", "--resolutions", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "40", "--t-samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 time(s) per image, Monte-Carlo standard error" in out and "<=" in out
    assert main(["sample", str(run), "-n", "4", "--steps", "8", "-o", str(tmp_path / "s.png")]) == 0
    assert main(["complete", str(run), "-n", "2", "--steps", "8", "-o", str(tmp_path / "c.png")]) == 0
