"""Flow matching: the ODE solvers, the instantaneous change of variables against a known affine flow (float64),
Hutchinson's estimator against the exact divergence, the bound after training on a tiny known distribution (Gibbs
and sub-normalisation), the ODE's invertibility, and the command line."""

import itertools
import math

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.models.diffusion.flow_matching import ode_log_density
from genzoo.models.diffusion.ode import exact_divergence, hutchinson_divergence, integrate, rademacher, time_grid
import conftest

TINY = conftest.TINY["flow-matching"]


def model(image_shape=(1, 4, 4), levels=4, **kw):
    return genzoo.models.build("flow-matching", image_shape=image_shape, levels=levels, **{**TINY, **kw})


def affine_field(D, seed=0):
    """v(z) = A z + b on z [N, 1, 1, D], float64, with its A and b."""
    g = torch.Generator().manual_seed(seed)
    A = 0.6 * torch.randn(D, D, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    return (lambda z, t: (z.flatten(1) @ A.T + b).view_as(z)), A, b


@pytest.mark.parametrize("solver,steps,tol", [("euler", 4000, 2e-3), ("heun", 200, 1e-5), ("adaptive", 1, 1e-7)])
def test_every_solver_solves_a_linear_ode_to_its_matrix_exponential(solver, steps, tol):
    field, A, b = affine_field(3)
    y0 = torch.randn(5, 1, 1, 3, dtype=torch.float64)
    (y1,), _ = integrate(lambda t, s: (field(s[0], t),), (y0,), 0.0, 1.0, solver, steps, tolerance=1e-10)
    E = torch.linalg.matrix_exp(A)
    expected = y0.flatten(1) @ E.T + torch.linalg.solve(A, E - torch.eye(3, dtype=torch.float64)) @ b
    assert torch.allclose(y1.flatten(1), expected, atol=tol, rtol=0)
    (back,), _ = integrate(lambda t, s: (field(s[0], t),), (y1,), 1.0, 0.0, solver, steps, tolerance=1e-10)
    assert torch.allclose(back, y0, atol=tol * 10, rtol=0)  # backwards in time: the inverse map


def test_heun_is_second_order_and_euler_first():
    field, A, b = affine_field(3)
    y0 = torch.randn(5, 1, 1, 3, dtype=torch.float64)
    exact = integrate(lambda t, s: (field(s[0], t),), (y0,), 0.0, 1.0, "adaptive", tolerance=1e-12)[0][0]

    def err(solver, n):
        return (integrate(lambda t, s: (field(s[0], t),), (y0,), 0.0, 1.0, solver, n)[0][0] - exact).abs().max()

    assert 1.8 < err("euler", 100) / err("euler", 200) < 2.2
    assert 3.6 < err("heun", 100) / err("heun", 200) < 4.4


@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (1.0, 0.0), (0.25, 0.75)])
def test_the_time_grid_runs_from_t0_to_t1_crowded_near_its_lower_end(t0, t1):
    for power in (1.0, 2.0, 3.5):
        grid = time_grid(t0, t1, 8, power)
        assert grid[0] == t0 and grid[-1] == t1 and len(grid) == 9
        steps = [abs(b - a) for a, b in zip(grid, grid[1:])]
        assert all(s > 0 for s in steps) and sum(steps) == pytest.approx(abs(t1 - t0))
        by_distance = sorted(steps) if t0 < t1 else sorted(steps, reverse=True)
        assert steps == pytest.approx(by_distance)  # each step from the lower end no shorter than the one before
        if power == 1.0:
            assert steps == pytest.approx([abs(t1 - t0) / 8] * 8)


def test_a_grid_crowded_near_the_data_end_solves_a_field_that_changes_fast_there_better():
    """dy/dt = -a y / (t + e): y(1) = y(0) (e / (1 + e))^a, a field whose scale changes by 1/e near t = 0 as a flow's
    does near its data end: at the same 16 Heun steps the crowded grids' relative error is a small fraction of the
    equal grid's (0.60 and 0.71 against 11.3), and every grid converges."""
    e, a, y0 = 0.05, 2.5, torch.ones(1, dtype=torch.float64)
    exact = (e / (1 + e)) ** a

    def err(steps, power):
        (y,), _ = integrate(lambda t, s: (-a * s[0] / (t + e),), (y0,), 0.0, 1.0, "heun", steps, power=power)
        return abs(y.item() - exact) / exact

    assert err(16, 2.0) < 0.1 * err(16, 1.0) and err(16, 3.0) < 0.1 * err(16, 1.0)
    for power in (1.0, 2.0, 3.0):
        assert err(256, power) < err(64, power) < err(16, power)


def test_the_ode_log_density_is_the_change_of_variables_of_a_known_affine_flow():
    """v = A z + b carries N(0, I) at t = 1 to s at t = 0 by z_1 = e^A s + A^-1 (e^A - I) b, so
    log p(s) = log N(z_1; 0, I) + log det e^A = log N(z_1) + tr A: exact with the exact divergence, and the mean
    over Hutchinson's probes (e^T A e, whose mean is tr A) within its standard error."""
    D = 4
    field, A, b = affine_field(D, seed=1)
    s = torch.randn(6, 1, 1, D, dtype=torch.float64)
    E = torch.linalg.matrix_exp(A)
    z1 = s.flatten(1) @ E.T + torch.linalg.solve(A, E - torch.eye(D, dtype=torch.float64)) @ b
    expected = -0.5 * (z1.pow(2).sum(1) + D * math.log(2 * math.pi)) + torch.logdet(E)
    logp, _ = ode_log_density(field, s, "adaptive", tolerance=1e-10, exact=True)
    assert torch.allclose(logp, expected, atol=1e-7, rtol=0)
    wrong = -0.5 * (z1.pow(2).sum(1) + D * math.log(2 * math.pi)) - torch.logdet(E)  # the sign the check must catch
    assert not torch.allclose(wrong, expected, atol=1e-3)
    n = 3000
    logp, _ = ode_log_density(field, s.repeat(n, 1, 1, 1), "heun", steps=50, generator=torch.Generator().manual_seed(0))
    logp = logp.view(n, 6)
    se = logp.std(0) / math.sqrt(n)
    assert (logp.std(0) > 0.1).all() and ((logp.mean(0) - expected).abs() < 4 * se).all()


def test_hutchinsons_mean_is_the_exact_divergence_of_a_network():
    torch.manual_seed(0)
    m = model((1, 2, 2), resolutions=1).double()
    for p in m.net.out.parameters():  # a field that is not zero (the output layer starts at zero)
        torch.nn.init.normal_(p, std=0.3)
    z = torch.randn(3, 1, 2, 2, dtype=torch.float64)

    def field(zz):
        return m.velocity(zz, 0.4)

    exact = exact_divergence(field, z)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: field(v[None])[0], z[i]).reshape(4, 4)
                       for i in range(3)])
    assert torch.allclose(exact, jac.diagonal(dim1=1, dim2=2).sum(1), atol=1e-10)
    n = 4000
    zz = z.repeat(n, 1, 1, 1).requires_grad_(True)
    probe = rademacher(zz.shape, torch.Generator().manual_seed(1), zz.dtype)
    estimates = hutchinson_divergence(field(zz), zz, probe).view(n, 3)
    se = estimates.std(0) / math.sqrt(n)
    assert ((estimates.mean(0) - exact).abs() < 4 * se + 1e-9).all()
    assert (estimates.std(0) > 0).all()  # a network's Jacobian is not diagonal: the estimator does vary


def test_the_bound_after_training_on_a_known_distribution_is_no_lower_than_its_entropy_and_subnormalised():
    """Trained on 16 images of 2 sub-pixels with 4 levels, the bound B(x) (exact divergence, Heun) keeps
    E_p[B] >= H(p) and sum_x exp(-B(x)) <= 1 (its density integrates to at most 1 over the cube), and it has
    learnt: E_p[B] well below the uniform's D log k."""
    torch.manual_seed(0)
    m = model((1, 1, 2), levels=4, channels=16, resolutions=1, attention=False)
    p = torch.tensor([30, 2, 5, 1, 2, 20, 1, 2, 5, 1, 15, 3, 1, 2, 3, 7], dtype=torch.float64)
    p /= p.sum()
    images = torch.tensor(list(itertools.product(range(4), repeat=2)), dtype=torch.uint8).view(-1, 1, 1, 2)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(300):
        loss = m.loss(images[torch.multinomial(p.float(), 256, True)])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    draws = 48
    e = m.estimate(images.repeat(draws, 1, 1, 1), ode_steps=16, generator=torch.Generator().manual_seed(3))
    per = e["nll"].view(draws, 16)
    B, se = per.mean(0), per.std(0) / math.sqrt(draws)
    assert e["evaluations"][0] == 32  # Heun: two a step
    entropy = -(p * p.log()).sum()
    assert (p * B).sum() >= entropy
    assert (p * B).sum() < 2 * math.log(4) - 0.15
    assert torch.exp(-B).sum() <= 1
    assert se.max() < 0.15  # the estimates are precise enough for the two checks to mean something


def test_the_code_is_the_odes_noise_and_decodes_back_to_every_image():
    torch.manual_seed(0)
    m = model((1, 4, 4), levels=4).double()
    for p in m.net.out.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randint(0, 4, (6, 1, 4, 4), dtype=torch.uint8)
    z = m.encode(x, steps=64)
    assert not torch.allclose(z, 2 * (x.double() + 0.5) / 4 - 1)  # the field moved them
    assert torch.equal(m.decode(z, steps=64), x)
    path = m.code_path(z[:2], z[2:4], torch.linspace(0, 1, 5, dtype=torch.float64))
    assert torch.allclose(path[:, 0], z[:2]) and torch.allclose(path[:, -1], z[2:4])


def test_sampling_is_seeded_and_every_solver_draws_levels():
    m = model()
    for solver in ("euler", "heun", "adaptive"):
        a = m.sample(3, generator=torch.Generator().manual_seed(0), solver=solver, steps=4)
        b = m.sample(3, generator=torch.Generator().manual_seed(0), solver=solver, steps=4)
        assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == (3, 1, 4, 4) and int(a.max()) < 4
    with pytest.raises(genzoo.GenzooError, match="solver must be one of euler, heun, adaptive"):
        m.sample(2, solver="dpm++")
    with pytest.raises(genzoo.GenzooError, match="does not complete"):
        m.complete(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.ones(1, 4, 4, dtype=torch.bool))


def test_a_conditional_model_trains_and_samples_its_classes():
    m = model(num_classes=3)
    x = torch.randint(0, 4, (6, 1, 4, 4), dtype=torch.uint8)
    m.loss(x, torch.tensor([0, 1, 2, 0, 1, 2]))["loss"].backward()
    assert m.sample(4, y=torch.tensor([2, 2, 1, 0]), steps=2).shape == (4, 1, 4, 4)
    assert m.estimate(x, torch.tensor([0, 1, 2, 0, 1, 2]), ode_steps=2)["nll"].shape == (6,)


def test_the_command_line_trains_evaluates_with_a_standard_error_samples_and_interpolates(tmp_path, capsys):
    run = tmp_path / "fm"
    assert main(["train", "flow-matching", "--data", "digits", "--out", str(run), "--epochs", "1", "--channels", "8",
                 "--resolutions", "2", "--batch-size", "64", "--eval-limit", "40", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "20", "--draws", "2", "--ode-steps", "4", "--json"]) == 0
    import json
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["likelihood_kind"] == "bound" and s["draws"] == 2 and s["standard_error"] > 0
    assert s["ode_solver"] == "heun" and s["field_evaluations"] == 8 and s["divergence"] == "hutchinson"
    assert main(["sample", str(run), "-n", "4", "--steps", "3", "--solver", "euler", "-o",
                 str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "-n", "4", "--solver", "dpm++", "-o", str(tmp_path / "t.png")]) == 2
    assert "solver must be one of euler, heun, adaptive" in capsys.readouterr().err
    assert main(["interpolate", str(run), "-o", str(tmp_path / "i.png"), "--pairs", "1", "--columns", "3"]) == 0
    assert main(["eval", str(run), "--t-samples", "3"]) == 2
    assert "--t-samples: flow-matching takes no such option" in capsys.readouterr().err
