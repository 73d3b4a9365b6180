"""The GAN: its two optimizers through the model's own training step, the straight-through level grid, the
gradient penalty, a proper observation model for AIS, a resume after a kill between its two updates, and the
command line (train, sample, eval's AIS figure with its fitted observation scale and BDMC's gap)."""

import json
import math

import pytest
import torch

import genzoo
from conftest import all_images, metrics, weights
from genzoo.cli import main
from test_resume import kill_and_resume
import conftest

TINY = conftest.TINY["gan"]


def gan(image_shape=(1, 4, 4), levels=2, **kw):
    return genzoo.models.build("gan", image_shape=image_shape, levels=levels, **{**TINY, **kw})


class _Step:
    """A stand-in for the trainer's Step: records which optimizer stepped."""

    def __init__(self, optimizers, index):
        self.optimizers, self.index, self.taken = optimizers, index, []

    def autocast(self):
        import contextlib
        return contextlib.nullcontext()

    def update(self, loss, optimizer=0):
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.taken.append(optimizer)


@pytest.mark.parametrize("loss", ["non-saturating", "wgan-gp"])
def test_the_discriminator_updates_every_step_and_the_generator_every_critic_steps(loss):
    torch.manual_seed(0)
    m = gan(loss=loss, critic_steps=2)
    opts = m.configure_optimizers(1e-2, 0.0)
    assert [sum(p.numel() for g in o.param_groups for p in g["params"]) for o in opts] == \
        [sum(p.numel() for p in m.generator.parameters()), sum(p.numel() for p in m.discriminator.parameters())]
    x = torch.randint(0, 2, (8, 1, 4, 4), dtype=torch.uint8)
    for index, expected in ((0, [1]), (1, [1, 0])):
        g0 = [p.clone() for p in m.generator.parameters()]
        d0 = [p.clone() for p in m.discriminator.parameters()]
        step = _Step(opts, index)
        out = m.training_step(step, x)
        assert step.taken == expected and torch.isfinite(out["loss"])
        assert any(not torch.equal(a, b) for a, b in zip(d0, m.discriminator.parameters()))
        assert any(not torch.equal(a, b) for a, b in zip(g0, m.generator.parameters())) == (0 in expected)


def test_generated_images_reach_the_discriminator_on_the_level_grid_with_a_gradient():
    m = gan(levels=5)
    v = (torch.rand(3, 1, 4, 4) * 2 - 1).requires_grad_(True)
    on = m._on_levels(v)
    levels = (on + 1) * 4 / 2
    assert torch.allclose(levels, levels.round(), atol=1e-6) and (on - v).abs().max() <= 0.25 + 1e-6
    on.sum().backward()
    assert torch.equal(v.grad, torch.ones_like(v))  # straight through


def test_the_gradient_penalty_is_its_weight_times_the_squared_distance_of_the_critics_gradient_norm_from_one():
    torch.manual_seed(0)
    m = gan(loss="wgan-gp", gradient_penalty=10.0)
    x = torch.randint(0, 2, (6, 1, 4, 4), dtype=torch.uint8)
    z = torch.randn(6, 3)
    with_gp = m.losses(x, z=z, generator=torch.Generator().manual_seed(1))["discriminator"]
    m.config.gradient_penalty = 0.0
    plain = m.losses(x, z=z, generator=torch.Generator().manual_seed(1))["discriminator"]
    # the same points between real and generated images, by hand
    u = torch.rand((6, 1, 1, 1), generator=torch.Generator().manual_seed(1))
    real, fake = x.float() * 2 - 1, m._on_levels(m.generate(z)).detach()
    between = (u * real + (1 - u) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(m.discriminator(between).sum(), between)
    expected = 10.0 * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert torch.allclose(with_gp - plain, expected, rtol=1e-5)


def test_the_observation_model_is_a_distribution_over_the_discrete_images():
    m = gan(image_shape=(1, 4, 4), levels=3).double().eval()
    mean = m.generate(torch.randn(1, 3, dtype=torch.float64))[:, :, :2, :3]  # G(z) for 6 of its sub-pixels
    images = all_images((1, 2, 3), 3)  # all 729 images of 6 sub-pixels with 3 levels
    for scale in (0.05, 0.5):
        total = torch.logsumexp(m.observed(images, mean.expand(len(images), -1, -1, -1), scale), 0)
        assert abs(total.item()) < 1e-9


def test_a_conditional_gan_samples_its_classes_and_scores_with_labels():
    m = gan(num_classes=3)
    assert m.sample(4, y=torch.tensor([0, 1, 2, 0])).shape == (4, 1, 4, 4)
    x = torch.randint(0, 2, (3, 1, 4, 4), dtype=torch.uint8)
    assert m.eval_figures(x, torch.tensor([0, 1, 2]), ais_steps=3, ais_chains=2, observation_scale=0.1)["nll"].shape \
        == (3,)


TRAIN = ["train", "gan", "--data", "digits", "--epochs", "2", "--batch-size", "250", "--warmup-steps", "2",
         "--eval-limit", "40", "--threads", "1", "--checkpoint-every", "4", "--width", "8", "--latent-dim", "8"]


@pytest.mark.parametrize("options", [[], ["--loss", "wgan-gp", "--critic-steps", "2", "--conditional"]])
def test_a_gan_killed_between_its_two_updates_resumes_bitwise(options, tmp_path):
    train = [*TRAIN, *options]
    ref = tmp_path / "ref"
    assert main([*train, "--out", str(ref)]) == 0
    # Adam.step's 13th call: the discriminator's update of step 7 (mid epoch 2), before that step's generator update
    out = kill_and_resume(tmp_path, "step", 13, train=train)
    assert all(torch.equal(weights(ref)[k], weights(out)[k]) for k in weights(ref))
    assert [m["test_loss"] for m in metrics(out)] == [m["test_loss"] for m in metrics(ref)]
    assert "test_nll" not in metrics(ref)[-1]  # a GAN trains with no likelihood


def test_compile_says_once_that_a_models_own_losses_run_uncompiled(tmp_path, capsys):
    # --compile compiles the loss Step.loss runs; the GAN's training step computes its two losses itself
    assert main([*TRAIN, "--epochs", "1", "--compile", "--out", str(tmp_path / "gan")]) == 0
    out = capsys.readouterr().out
    assert out.count("this model's training step computes its own losses, which run uncompiled") == 1


def test_the_command_line_trains_samples_and_gives_an_ais_figure_with_a_fitted_scale(tmp_path, capsys):
    run = tmp_path / "gan"
    assert main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["sample", str(run), "-n", "8", "--temperature", "0.8", "-o", str(tmp_path / "s.png")]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "10", "--ais-steps", "8", "--ais-chains", "2", "--bdmc", "4",
                 "--json"]) == 0
    captured = capsys.readouterr()
    s = json.loads(captured.out.strip().splitlines()[-1])
    assert "fitting the estimator on 32 images of the train split" in captured.err
    assert s["likelihood_kind"] == "bound" and s["ais_steps"] == 8 and s["observation"]["fitted_on"] == 32
    assert s["observation"]["scale"] in genzoo.models.adversarial.gan.SCALES
    assert s["bdmc"]["images"] == 4 and math.isfinite(s["nll_nats"])
    assert main(["eval", str(run), "--limit", "10", "--ais-steps", "4", "--observation-scale", "0.3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["observation"] == {"kind": "discretized logistic at G(z)", "scale": 0.3, "fitted_on": 0}
    assert main(["eval", str(run), "--iwae-k", "4"]) == 2
    assert "--iwae-k: gan takes no such option (taken by vae)" in capsys.readouterr().err
    assert main(["complete", str(run), "-o", str(tmp_path / "c.png")]) == 2
