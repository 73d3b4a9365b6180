"""The variational diffusion model: its bound as theory orders it, on tiny images where every image
can be listed; the Monte-Carlo estimate against a quadrature over t; the schedules; the variance
gradient; the samplers (seeded, deterministic DDIM, guidance, completion); save/load."""

import math

import pytest
import torch

import genzoo
from genzoo.evaluation import figures
from conftest import all_images
from genzoo.models.diffusion.vdm import SCHEDULES, alpha_sigma
import conftest

TINY = conftest.TINY["diffusion"]


def build(image_shape=(1, 2, 2), levels=2, seed=0, **kw):
    torch.manual_seed(seed)
    return genzoo.models.build("diffusion", image_shape=image_shape, levels=levels, **{**TINY, **kw})


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_schedule_is_monotone_spans_its_ends_and_its_derivative_is_the_slope(schedule):
    model = build(schedule=schedule).double()
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    gamma, slope = model.schedule(t)
    assert torch.all(gamma[1:] > gamma[:-1]) and torch.all(slope > 0)
    assert gamma[0].item() == pytest.approx(-13.3, abs=1e-6) and gamma[-1].item() == pytest.approx(5.0, abs=1e-6)
    h = 1e-6
    mid = t[1:-1]
    numeric = (model.schedule(mid + h)[0] - model.schedule(mid - h)[0]) / (2 * h)
    assert torch.allclose(model.schedule(mid)[1], numeric, rtol=1e-5)


@pytest.mark.parametrize("timesteps", [0, 10])
def test_every_term_of_the_bound_is_nonnegative_and_the_reconstruction_is_a_distribution(timesteps):
    model = build((1, 3, 3), levels=5, timesteps=timesteps).double()
    x = torch.randint(0, 5, (16, 1, 3, 3), dtype=torch.uint8)
    parts = model.terms(x, generator=torch.Generator().manual_seed(0))
    assert all(torch.all(v >= 0) for v in parts.values())
    # p(x_i | z_0) over the k levels sums to 1, exactly, for any z_0
    z0 = torch.randn(7, 1, 3, 3, dtype=torch.float64)
    assert torch.allclose(model.level_log_probs(z0).exp().sum(-1), torch.ones(7, 1, 3, 3, dtype=torch.float64))


def test_the_monte_carlo_diffusion_term_agrees_with_a_quadrature_over_t():
    model = build((1, 2, 2), levels=3).double().eval()
    for p in model.net.out.parameters():  # a fixed model that predicts some noise, not none
        torch.nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(1))
    x = torch.tensor([[[[0, 2], [1, 1]]]], dtype=torch.uint8)
    xs = genzoo.models.base.to_signed(x, 3, torch.float64)
    eps = torch.randn(1, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def integrand(t):  # the diffusion term at times t [N], the same noise eps at every t
        return model._diffusion_term(xs.expand(len(t), -1, -1, -1), t, None, eps.expand(len(t), -1, -1, -1))

    with torch.no_grad():
        n = 20000
        quadrature = integrand((torch.arange(n, dtype=torch.float64) + 0.5) / n).mean().item()  # midpoint rule
        k = 256
        g = torch.Generator().manual_seed(3)
        estimates = torch.stack([integrand((torch.arange(k) + torch.rand(k, generator=g,
                                                                         dtype=torch.float64)) / k).mean()
                                 for _ in range(20)])  # stratified Monte Carlo, as log_prob(t_samples=k) does
    se = estimates.std().item() / math.sqrt(len(estimates))
    assert abs(estimates.mean().item() - quadrature) < 4 * se + 1e-3 * quadrature


def oracle_denoiser(model, images, probs):
    """The best possible eps_hat for data drawn from ``probs`` over ``images``: (z - alpha E[x | z_t]) / sigma,
    the posterior over the listed images computed exactly (Bayes' rule, float64)."""
    X = genzoo.models.base.to_signed(images, model.levels, torch.float64).flatten(1)  # (M, D)

    def eps_hat(z, t, y=None):
        a, s = alpha_sigma(model.schedule(t)[0])  # (B,) each
        zf = z.flatten(1)  # (B, D)
        log_w = probs.log()[None] - 0.5 * ((zf[:, None] - a[:, None, None] * X[None]) ** 2).sum(-1) / s[:, None] ** 2
        x_hat = torch.softmax(log_w, dim=1) @ X  # E[x | z_t], (B, D)
        return ((zf - a[:, None] * x_hat) / s[:, None]).view_as(z)
    return eps_hat


def expected_bound(model, x, n_t=300, n_eps=601):
    """The bound of one 1x1x1 image x, its expectations taken by quadrature instead of sampling: over the
    noise on a midpoint grid of [-8, 8] with Gaussian weights, over t on a midpoint grid (or, with
    ``timesteps`` T, the T steps exactly). float64, nats."""
    T = model.config.timesteps
    t = torch.arange(1, T + 1, dtype=torch.float64) / T if T else (torch.arange(n_t, dtype=torch.float64) + 0.5) / n_t
    e = (torch.arange(n_eps, dtype=torch.float64) + 0.5) / n_eps * 16 - 8
    w = torch.exp(-0.5 * e ** 2)
    w = w / w.sum()
    xs = genzoo.models.base.to_signed(x, model.levels, torch.float64).view(1, 1, 1, 1).expand(n_eps, 1, 1, 1)
    with torch.no_grad():  # E_eps at each t, then the mean over t (a midpoint rule, or the T steps)
        diffusion = torch.stack([(model._diffusion_term(xs, ti.expand(n_eps), None, e.view(-1, 1, 1, 1)) * w).sum()
                                 for ti in t]).mean()
        parts = model.terms(x.view(1, 1, 1, 1).expand(64, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    return (parts["prior"].mean() + parts["reconstruction"].mean() + diffusion).item()


@pytest.mark.parametrize("schedule,timesteps", [("learned", 0), ("cosine", 0), ("linear", 0), ("linear", 10)])
def test_the_bound_of_the_best_denoiser_is_no_lower_than_the_entropy_and_subnormalised(schedule, timesteps):
    # With the exact denoiser of a known distribution p the bound is nearly tight, so a wrong factor in any term
    # (half the diffusion term, a missing prior) shows: E_p[B] would fall below H(p), or sum exp(-B) pass 1.
    images = all_images((1, 1, 1), 3)
    probs = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    entropy = -(probs * probs.log()).sum().item()
    model = build((1, 1, 1), 3, schedule=schedule, timesteps=timesteps).double().eval()
    model.eps_hat = oracle_denoiser(model, images, probs)
    bound = torch.tensor([expected_bound(model, x) for x in images], dtype=torch.float64)  # [every image] nats
    expected = (probs * bound).sum().item()
    assert entropy <= expected and (timesteps or expected < entropy + 0.02)  # tight in continuous time (T = 10: looser)
    assert torch.exp(-bound).sum().item() <= 1.0  # it never puts more than all the mass on the images


def test_the_sampled_bound_of_the_best_denoiser_agrees_with_its_expectation():
    images = all_images((1, 1, 1), 3)
    probs = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    model = build((1, 1, 1), 3).double().eval()
    model.eps_hat = oracle_denoiser(model, images, probs)
    with torch.no_grad():
        draws = torch.stack([-model.log_prob(images, t_samples=64, generator=torch.Generator().manual_seed(i))
                             for i in range(8)])  # (8, 3): what genzoo eval --t-samples 64 reports
    exact = torch.tensor([expected_bound(model, x) for x in images], dtype=torch.float64)
    se = draws.std(0) / math.sqrt(len(draws))
    assert torch.all((draws.mean(0) - exact).abs() < 4 * se + 1e-3)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_code_is_the_deterministic_samplers_noise_and_decodes_back_to_every_image(schedule):
    # encode runs the DDIM ODE from the data to t = 1, decode runs it back: with the best denoiser of a known
    # distribution both are discretisations of one invertible flow, so every image of the tiny space returns
    # and the code converges as the steps are refined
    images = all_images((1, 1, 2), 3)  # all 9 images
    probs = torch.softmax(torch.randn(9, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 0)
    model = build((1, 1, 2), 3, schedule=schedule).double().eval()
    model.eps_hat = oracle_denoiser(model, images, probs)
    z = model.encode(images, steps=200)
    assert torch.equal(model.decode(z, steps=200), images)
    assert (model.encode(images, steps=400) - z).abs().max() < 0.02 * z.abs().max()


def test_interpolation_walks_the_sphere_between_two_noises():
    z = torch.randn(2, 3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # 3 pairs
    z0, z1 = z[0], z[1] * (z[0].flatten(1).norm(dim=1) / z[1].flatten(1).norm(dim=1)).view(3, 1, 1, 1)  # equal norms
    path = genzoo.models.build("diffusion", **TINY).code_path(z0, z1, torch.linspace(0, 1, 7, dtype=torch.float64))
    assert path.shape == (3, 7, 1, 4, 4)
    assert torch.allclose(path[:, 0], z0) and torch.allclose(path[:, -1], z1)
    norms = path.flatten(2).norm(dim=2)  # (3, 7): constant along the path, where a straight line sags
    assert torch.allclose(norms, norms[:, :1].expand(3, 7))
    assert torch.all(((z0 + z1) / 2).flatten(1).norm(dim=1) < norms[:, 3] * 0.9)


def test_the_schedules_shape_follows_the_variance_and_its_ends_the_bound():
    model = build((1, 3, 3), levels=4)
    x = torch.randint(0, 4, (8, 1, 3, 3), dtype=torch.uint8)
    shape = ["w1", "w2", "b2", "w3"]
    model.train()
    parts = model.terms(x, generator=torch.Generator().manual_seed(0))
    (parts["diffusion"].mean() / model.dims).backward()
    got = {n: p.grad.clone() for n, p in model.schedule.named_parameters() if n in shape}
    model.zero_grad()
    model.eval()  # the same terms without the variance gradient, then the variance by hand
    L = model.terms(x, generator=torch.Generator().manual_seed(0))["diffusion"]
    variance = ((L - L.mean().detach()) ** 2).mean() / L.mean().detach()
    (variance / model.dims).backward()
    want = {n: p.grad for n, p in model.schedule.named_parameters() if n in shape}
    assert all(torch.allclose(got[n], want[n], rtol=1e-4, atol=1e-8) for n in shape)
    assert any(want[n].abs().sum() > 0 for n in shape)


def test_samplers_are_seeded_ddim_is_deterministic_and_guidance_zero_is_the_conditional_draw():
    model = build((1, 4, 4), levels=4, num_classes=3).eval()
    for p in model.net.parameters():  # an untrained net predicts zero noise whatever the class (its zero-initialised
        if torch.all(p == 0):  # layers): wake them up
            torch.nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(1))
    draw = lambda **kw: model.sample(6, generator=torch.Generator().manual_seed(0), steps=5, **kw)  # noqa: E731
    a, b = draw(), draw()
    assert a.shape == (6, 1, 4, 4) and a.dtype == torch.uint8 and torch.equal(a, b) and int(a.max()) < 4
    assert torch.equal(draw(ddim=True), draw(ddim=True))
    assert torch.equal(draw(guidance=0.0), draw()) and not torch.equal(draw(guidance=3.0, ddim=True), draw(ddim=True))
    with pytest.raises(genzoo.GenzooError, match="conditional"):
        build((1, 4, 4), levels=4).sample(2, guidance=1.0)


def test_completion_keeps_the_known_sub_pixels():
    model = build((1, 4, 4), levels=3).eval()
    prefix = torch.randint(0, 3, (5, 1, 4, 4), dtype=torch.uint8)
    known = torch.zeros(1, 4, 4, dtype=torch.bool)
    known[:, :2] = True
    out = model.sample(5, generator=torch.Generator().manual_seed(0), prefix=prefix, known=known, steps=4)
    assert torch.equal(out[:, :, :2], prefix[:, :, :2])


def test_save_load_round_trip_and_float64(tmp_path):
    model = build((3, 4, 4), levels=8, fourier_features=True, timesteps=20).eval()
    x = torch.randint(0, 8, (3, 3, 4, 4), dtype=torch.uint8)
    model.save(tmp_path / "m")
    again = genzoo.load(tmp_path / "m")
    assert torch.equal(model.log_prob(x), again.log_prob(x))
    assert model.double().log_prob(x).dtype == torch.float64


def test_alpha_and_sigma_preserve_variance():
    gamma = torch.linspace(-13, 5, 50, dtype=torch.float64)
    a, s = alpha_sigma(gamma)
    assert torch.allclose(a ** 2 + s ** 2, torch.ones_like(a)) and torch.allclose((a / s) ** 2, torch.exp(-gamma))


def test_the_command_line_trains_evaluates_samples_completes_and_reports(tmp_path, capsys):
    import json

    from genzoo.cli import main

    run = tmp_path / "diffusion"
    assert main(["train", "diffusion", "--data", "digits", "--out", str(run), "--epochs", "1", "--channels", "8",
                 "--resolutions", "2", "--conditional", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--t-samples", "4", "--json", "--limit", "40"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["likelihood_kind"] == "bound" and s["t_samples"] == 4 and s["standard_error"] > 0
    assert s["nll_nats"] == pytest.approx(sum(s["terms"].values()),
                                          rel=1e-6)  # the bound is the sum of its terms (fp32)
    for extra in ([], ["--ddim", "--steps", "5"], ["--guidance", "2", "--steps", "5"]):
        assert main(["sample", str(run), "-n", "6", "-o", str(tmp_path / "s.png"), *extra]) == 0
    assert main(["complete", str(run), "-n", "3", "--samples", "2", "--steps", "5", "-o", str(tmp_path / "c.png")]) == 0
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "--samples", "4"]) == 0
    assert main(["interpolate", str(run), "-o", str(tmp_path / "i.png"), "--pairs", "1", "--steps", "3"]) == 0
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "r.png"), "-n", "2"]) == 0
    assert main(["probe", str(run), "--limit", "200", "--threads", "1", "--json"]) == 0
    probe = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert probe["codes"]["width"] == 64 and 0 <= probe["codes"]["accuracy"] <= 1
    assert main(["sample", str(run), "-n", "2", "-o", str(tmp_path / "x.png"), "--temperature", "0.5"]) == 2
    assert main(["eval", str(run), "--iwae-k", "3"]) == 2
    assert main(["eval", str(run), "--steps", "5"]) == 2  # sampler options without --fid draw nothing: refused
    assert main(["eval", str(run), "--limit", "40", "--fid", "20", "--steps", "3", "--ddim", "--json"]) == 0
    q = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["quality"]
    assert q["sampler"] == {"steps": 3, "ddim": True} and q["fid"] >= 0


def test_a_sampled_bound_kept_by_eval_is_the_one_with_the_most_times_not_the_luckiest():

    def kept(nll, k):
        return {"data": "d", "split": "test", "nll_nats": nll, "count": 10, "t_samples": k}
    evals = [kept(100.0, 1), kept(98.0, 1), kept(99.5, 16), kept(99.0, 4)]
    best = figures.tightest_likelihood(evals, "d")
    assert best["nll_nats"] == 99.5 and "sampled at 16 time(s) per image" in figures.eval_label(best)
    assert figures.tightest_likelihood([*evals, kept(99.7, 16)], "d")["nll_nats"] == 99.7  # the latest of equals


def _oracle_model(probs, images, **kw):
    model = build(tuple(images.shape[1:]), len(probs) if images.shape[1:] == (1, 1, 1) else 2, **kw).double().eval()
    model.eps_hat = oracle_denoiser(model, images, probs)
    return model


@pytest.mark.parametrize("solver,steps", [("ancestral", 100), ("ddim", 100), ("dpm++", 20)])
def test_with_the_exact_denoiser_every_solver_draws_the_known_distribution(solver, steps):
    # a chi-square test of 4000 draws against p over the 3 levels of a one-sub-pixel image
    from scipy.stats import chisquare

    probs = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    model = _oracle_model(probs, all_images((1, 1, 1), 3))
    x = model.sample(4000, generator=torch.Generator().manual_seed(0), steps=steps, solver=solver)
    counts = torch.bincount(x.flatten().long(), minlength=3).double()
    assert chisquare(counts.numpy(), (4000 * probs).numpy()).pvalue > 1e-3, counts.tolist()


def test_at_ten_steps_dpm_solver_pp_is_closer_to_the_known_distribution_than_ddim():
    # three point masses make the flow near t = 0 stiff: ten steps cannot be exact, but the second-order solver
    # (with its log-SNR spacing) lands nearer p than DDIM (measured: total variation 0.043 against 0.093)
    probs = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    model = _oracle_model(probs, all_images((1, 1, 1), 3))

    def distance(solver):
        x = model.sample(4000, generator=torch.Generator().manual_seed(0), steps=10, solver=solver)
        return 0.5 * (torch.bincount(x.flatten().long(), minlength=3).double() / 4000 - probs).abs().sum().item()
    assert distance("dpm++") < 0.6 * distance("ddim")


def test_dpm_solver_pp_converges_to_the_ode_solution_faster_than_ddim():
    # the same z_1 through the probability-flow ODE of a known two-pixel distribution: DDIM is first order,
    # DPM-Solver++(2M) second, so at 20 steps its distance to the 4000-step solution is far smaller, and at 200
    # steps the two agree
    from genzoo.models.diffusion.samplers import solve

    images = all_images((1, 1, 2), 2)
    probs = torch.tensor([0.4, 0.1, 0.2, 0.3], dtype=torch.float64)
    model = _oracle_model(probs, images, schedule="cosine")
    z1 = torch.randn(500, 1, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def run(solver, steps):
        return solve(z1, steps, solver, lambda z, t: model.eps_hat(z, torch.full((len(z),), t, dtype=z.dtype)),
                     lambda t: model._gamma(t, z1), lambda: None)

    with torch.no_grad():
        exact = run("ddim", 4000)
        ddim_error = (run("ddim", 20) - exact).abs().mean().item()
        dpm_error = (run("dpm++", 20) - exact).abs().mean().item()
        assert dpm_error < ddim_error / 3, (dpm_error, ddim_error)
        assert (run("dpm++", 200) - exact).abs().mean().item() < 0.02 * exact.abs().mean().item()


def test_the_solver_option_is_checked_and_ddim_is_its_old_name():
    model = build((1, 4, 4), 2)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(model.sample(3, generator=g(), steps=5, ddim=True), model.sample(3, generator=g(), steps=5,
                                                                                        solver="ddim"))
    with pytest.raises(genzoo.GenzooError, match="solver must be one of"):
        model.sample(2, steps=5, solver="heun")
    with pytest.raises(genzoo.GenzooError, match="--ddim is --solver ddim"):
        model.sample(2, steps=5, solver="dpm++", ddim=True)
