"""Annealed importance sampling and bidirectional Monte Carlo (models/ais.py): on a linear-Gaussian decoder, whose
marginal p(x) = N(b, W W^T + s^2 I) is known in closed form, AIS recovers log p(x) and BDMC's two bounds bracket it;
on a trained VAE, AIS is at least as tight as IWAE; the command line gives the VAE an AIS figure and BDMC's gap."""

import json
import math

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.models import ais


def linear_gaussian(L=3, D=6, s=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, L, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)

    def log_likelihood(x, z):
        return -0.5 * ((x - z @ W.T - b) / s).pow(2).sum(1) - D * math.log(s) - 0.5 * D * math.log(2 * math.pi)

    marginal = torch.distributions.MultivariateNormal(b, W @ W.T + s ** 2 * torch.eye(D, dtype=torch.float64))

    def simulate(z):
        simulate.last = z @ W.T + b + s * torch.randn(len(z), D, generator=g, dtype=torch.float64)
        return simulate.last

    def posterior(x):
        """The exact posterior of z given x [N, D]: its mean [N, L] and the log of its covariance's diagonal."""
        cov = torch.linalg.inv(torch.eye(L, dtype=torch.float64) + W.T @ W / s ** 2)
        mean = (x - b) @ W @ cov.T / s ** 2
        return mean, cov.diagonal().log().expand_as(mean)

    log_likelihood.posterior = posterior
    return log_likelihood, marginal, simulate


def test_the_sigmoid_schedule_runs_from_zero_to_one_and_is_increasing():
    b = ais.sigmoid_schedule(50)
    assert b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    assert ais.sigmoid_schedule(1).tolist() == [0.0, 1.0]


def test_ais_recovers_the_closed_form_marginal_of_a_linear_gaussian_decoder():
    log_likelihood, marginal, simulate = linear_gaussian()
    x = marginal.sample((100,))
    exact = marginal.log_prob(x)
    est = ais.ais_log_likelihood(log_likelihood, x, 3, steps=1000, chains=4, generator=torch.Generator().manual_seed(1),
                                 dtype=torch.float64)
    diff = est - exact
    se = diff.std() / math.sqrt(len(x))
    assert diff.mean().abs() < 3 * se + 0.01, (diff.mean(), se)
    few = ais.ais_log_likelihood(log_likelihood, x, 3, steps=5, chains=4, generator=torch.Generator().manual_seed(1),
                                 dtype=torch.float64)
    assert (few - exact).mean() < -0.3  # a lower bound: with few steps clearly below, closing as steps grow


def test_bdmc_brackets_the_true_log_likelihood_of_simulated_data_and_its_gap_shrinks_with_steps():
    log_likelihood, marginal, simulate = linear_gaussian(s=0.5, seed=3)
    gaps = []
    for steps in (20, 300):
        g = torch.Generator().manual_seed(4)
        z = torch.randn(150, 3, generator=g, dtype=torch.float64)
        x = simulate(z)
        exact = marginal.log_prob(x).mean().item()
        lower = ais.ais_log_likelihood(log_likelihood, x, 3, steps, 2, generator=g, dtype=torch.float64).mean().item()
        log_w = ais.anneal(lambda zz: log_likelihood(x.repeat(2, 1), zz), z.repeat(2, 1), steps, generator=g,
                           reverse=True)
        upper = -ais.log_mean_exp(log_w.view(2, 150)).mean().item()
        assert lower < exact < upper, (steps, lower, exact, upper)
        gaps.append(upper - lower)
    assert gaps[1] < gaps[0] / 3
    r = ais.bdmc(log_likelihood, simulate, 20, 3, 50, 2, generator=torch.Generator().manual_seed(0),
                 dtype=torch.float64)
    assert r["images"] == 20 and r["gap"] == pytest.approx(r["upper_log_likelihood"] - r["lower_log_likelihood"])
    # started from the exact posterior's mean and variances (a Gaussian near the posterior), both bounds still
    # bracket the truth, closer
    g = torch.Generator().manual_seed(5)
    r = ais.bdmc(log_likelihood, simulate, 150, 3, 20, 2, generator=g, dtype=torch.float64,
                 posterior_of=log_likelihood.posterior)
    exact = marginal.log_prob(simulate.last).mean().item()  # of the images bdmc simulated
    assert r["lower_log_likelihood"] < exact < r["upper_log_likelihood"] and r["gap"] < gaps[0] / 3

def test_hmc_leaves_the_posterior_of_a_linear_gaussian_invariant():
    """Started at exact posterior draws, many HMC transitions keep their mean and covariance."""
    log_likelihood, marginal, simulate = linear_gaussian(s=0.7, seed=5)
    x0 = simulate(torch.randn(1, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64))
    # the posterior of z given x0: precision I + W^T W / s^2 (read off the log-likelihood's Hessian)
    H = -torch.autograd.functional.hessian(lambda z: log_likelihood(x0, z[None])[0],
                                           torch.zeros(3, dtype=torch.float64))
    precision = torch.eye(3, dtype=torch.float64) + H
    cov = torch.linalg.inv(precision)
    grad0 = torch.autograd.functional.jacobian(lambda z: log_likelihood(x0, z[None])[0],
                                               torch.zeros(3, dtype=torch.float64))
    mean = cov @ grad0
    post = torch.distributions.MultivariateNormal(mean, cov)
    z = post.sample((4000,))
    g = torch.Generator().manual_seed(7)
    size = torch.full((4000,), 0.3, dtype=torch.float64)
    for _ in range(20):
        z, accept, _ = ais.hmc_step(lambda zz: log_likelihood(x0.expand(len(zz), -1), zz), z, 1.0, size, 5, g)
    assert accept.double().mean() > 0.5
    assert torch.allclose(z.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(z.T), cov, atol=0.05)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vae") / "run"
    assert main(["train", "vae", "--data", "digits", "--out", str(run), "--epochs", "3", "--latent-dim", "4",
                 "--width", "32", "--batch-size", "100", "--eval-limit", "40", "--threads", "1"]) == 0
    return run


def test_ais_on_a_trained_vae_is_at_least_as_tight_as_iwae(vae_run):
    model = genzoo.load(vae_run)
    test = genzoo.data.load("digits", "test")
    x = test.images[:60]
    g = torch.Generator().manual_seed(0)
    iwae = model.log_prob(x, k=64, generator=g)
    annealed = model.ais(x, steps=300, chains=4, generator=g)
    diff = annealed.double() - iwae.double()
    assert diff.mean() > -2 * diff.std() / math.sqrt(len(x)), (diff.mean(), diff.std())


def test_the_command_line_gives_a_vae_an_ais_figure_with_bdmcs_gap(vae_run, capsys):
    assert main(["eval", str(vae_run), "--limit", "20", "--ais-steps", "30", "--ais-chains", "2", "--bdmc", "10",
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["ais_steps"] == 30 and s["ais_chains"] == 2 and s["likelihood_kind"] == "bound"
    b = s["bdmc"]
    assert b["images"] == 10 and b["lower_log_likelihood"] <= b["upper_log_likelihood"] + 0.5
    assert main(["eval", str(vae_run), "--ais-steps", "30", "--iwae-k", "5"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert main(["eval", str(vae_run), "--bdmc", "5"]) == 2
    assert "needs --ais-steps" in capsys.readouterr().err


def test_ais_started_from_a_gaussian_is_iwae_at_one_step_and_recovers_the_marginal_as_steps_grow():
    """From f_0 = N(m, v) the one-step weights are p(z) p(x | z) / f_0(z) at z ~ f_0: importance sampling (IWAE's);
    with many steps the estimate reaches the closed-form marginal."""
    log_likelihood, marginal, _ = linear_gaussian(seed=2)
    x = marginal.sample((100,))
    exact = marginal.log_prob(x)
    mean, logvar = torch.zeros(100, 3, dtype=torch.float64) + 0.3, torch.full((100, 3), -0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    one = ais.ais_log_likelihood(log_likelihood, x, 3, 1, 1, generator=g, dtype=torch.float64,
                                 posterior=(mean, logvar))
    g = torch.Generator().manual_seed(0)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(100, 3, generator=g, dtype=torch.float64)
    q = -0.5 * ((z - mean) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi)).sum(1)
    importance = ais.log_normal(z) + log_likelihood(x, z) - q
    assert torch.allclose(one, importance, atol=1e-9)
    many = ais.ais_log_likelihood(log_likelihood, x, 3, 500, 4, generator=g, dtype=torch.float64,
                                  posterior=(mean, logvar))
    diff = many - exact
    assert diff.mean().abs() < 3 * diff.std() / math.sqrt(100) + 0.02
