"""Autoencoders and the VAE: the bounds as theory orders them,
what each autoencoder variant is for, I/O and the command line."""

import json
import math

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.likelihood import discretized_logistic_log_prob
from genzoo.models.latent.vae import gaussian_kl, gaussian_log_density
from genzoo.training.trainer import TrainConfig, Trainer
from conftest import all_images

LATENT = ["autoencoder", "denoising-autoencoder", "sparse-autoencoder", "vae"]


def tiny_vae(image_shape=(1, 2, 2), levels=2, latent_dim=1, seed=0, **kw):
    torch.manual_seed(seed)
    return genzoo.models.build("vae", image_shape=image_shape, levels=levels, latent_dim=latent_dim, width=8,
                               **kw).double()


def test_analytic_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g,
                                                                                  dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, 4, generator=g, dtype=torch.float64)
    zero = torch.zeros_like(mu)
    mc = (gaussian_log_density(z.flatten(0, 1), mu.repeat(200_000, 1), logvar.repeat(200_000, 1))
          - gaussian_log_density(z.flatten(0, 1), zero.repeat(200_000, 1), zero.repeat(200_000, 1))).view(200_000, 3)
    se = mc.std(0) / math.sqrt(200_000)
    assert torch.all((mc.mean(0) - gaussian_kl(mu, logvar)).abs() < 4 * se)


def test_iwae_with_one_sample_is_the_elbo():
    model = tiny_vae(image_shape=(1, 3, 3), latent_dim=2)
    x = torch.randint(0, 2, (5, 1, 3, 3), dtype=torch.uint8)
    elbo_mc, _, _ = model.elbo(x, torch.Generator().manual_seed(3), kl="mc")
    iwae1 = model.log_prob(x, k=1, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(iwae1, elbo_mc, atol=1e-10)  # the same z: exactly the same number
    # and on average the analytic-KL ELBO (what training and eval report) is that same bound
    g = torch.Generator().manual_seed(4)
    mean_mc = torch.stack([model.elbo(x, g, kl="mc")[0] for _ in range(4000)]).mean(0)
    mean_an = torch.stack([model.elbo(x, g)[0] for _ in range(4000)]).mean(0)
    assert torch.allclose(mean_mc, mean_an, atol=0.05)


def test_bounds_are_ordered_and_approach_the_true_likelihood():
    # A 1-D latent: log P(x) = log of the integral of p(x|z) N(z; 0, 1) dz, by quadrature.
    model = tiny_vae()
    with torch.no_grad():
        for p in model.decoder.parameters():  # a decoder that really depends on z
            p.mul_(4)
    xs = all_images((1, 2, 2), 2)  # all 16 binary 2x2 images
    z = torch.linspace(-10, 10, 4001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        log_joint = torch.stack([model.log_likelihood(x.expand(len(z), 1, 2, 2), z) for x in xs])  # (16, Z)
        log_joint = log_joint - 0.5 * (z.T ** 2 + math.log(2 * math.pi))
        true = torch.logsumexp(log_joint, dim=1) + math.log(z[1, 0] - z[0, 0])  # (16,)
        assert true.exp().sum().item() == pytest.approx(1.0, abs=1e-6)  # P(x) is normalised
        g = torch.Generator().manual_seed(0)
        elbo = torch.stack([model.elbo(xs, g)[0] for _ in range(4000)]).mean(0)
        bounds = {k: torch.stack([model.log_prob(xs, k=k, generator=g) for _ in range(r)]).mean(0)
                  for k, r in ((1, 4000), (10, 800), (100, 200))}  # Monte Carlo means: ~0.01 nats of noise
        k5000 = model.log_prob(xs, k=5000, generator=g)
    tol = 0.02
    assert torch.all(elbo <= bounds[10] + tol) and torch.all(bounds[1] <= bounds[10] + tol)
    assert torch.all(bounds[10] <= bounds[100] + tol) and torch.all(bounds[100] <= true + tol)
    assert elbo.mean() < bounds[10].mean() < bounds[100].mean() < true.mean()  # strictly, on average
    # K = 5000: within a few hundredths of a nat of log P(x), a small fraction of the ELBO's gap
    assert (k5000 - true).abs().mean() < 0.03 and (k5000 - true).abs().max() < 0.1
    assert (k5000 - true).abs().mean() < 0.2 * (true - elbo).mean()


def test_the_iwae_training_objective_is_the_importance_weighted_bound_and_tighter_than_the_elbo():
    vae = tiny_vae(image_shape=(1, 3, 3), latent_dim=2)
    iwae = tiny_vae(image_shape=(1, 3, 3), latent_dim=2, train_samples=5)  # the same weights (same seed)
    x = torch.randint(0, 2, (64, 1, 3, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    vae.eval(), iwae.eval()
    out = iwae.loss(x)
    # the reported figure is -IWAE_5 with the test figure's seeded draws, the loss its mean per dimension
    assert torch.allclose(-out["nll"], iwae.log_prob(x, k=5, generator=torch.Generator().manual_seed(0)), atol=1e-12)
    assert out["loss"].item() == pytest.approx(out["nll"].mean().item() / 9, rel=1e-12)
    # IWAE_5 >= ELBO in expectation (Burda et al., theorem 1): over 64 images and 200 draws each
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        elbo = torch.stack([vae.elbo(x, g)[0] for _ in range(200)]).mean()
        bound5 = torch.stack([iwae.importance_weighted_bound(x, 5, generator=g)[0] for _ in range(200)]).mean()
    assert bound5 > elbo
    # it trains: the gradient reaches the encoder through the reparameterized samples
    iwae.train()
    iwae.loss(x)["loss"].backward()
    grads = [p.grad for p in iwae.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_discretized_logistic_is_normalised_over_levels():
    g = torch.Generator().manual_seed(0)
    for levels in (3, 17, 256):
        mean, log_scale = torch.randn(5, generator=g) * 1.2, torch.randn(5, generator=g) - 2
        x = torch.arange(levels)[:, None].expand(levels, 5)
        total = discretized_logistic_log_prob(x, mean, log_scale, levels).double().exp().sum(0)
        assert torch.allclose(total, torch.ones(5, dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("decoder,levels", [("bernoulli", 2), ("categorical", 3), ("logistic", 3)])
def test_every_decoder_is_a_distribution_over_the_discrete_image(decoder, levels):
    model = tiny_vae(image_shape=(1, 1, 3), levels=levels, latent_dim=2, decoder_likelihood=decoder)
    xs = all_images((1, 1, 3), levels)
    z = torch.randn(1, 2, dtype=torch.float64).expand(len(xs), 2)
    with torch.no_grad():
        assert model.log_likelihood(xs, z).exp().sum().item() == pytest.approx(1.0, abs=1e-6)
        s = model.sample(50, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.uint8 and int(s.max()) < levels


def _digits_ae(name, tmp_path, epochs=20, **kw):
    train, test = genzoo.data.load("digits", "train"), genzoo.data.load("digits", "test")
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=(1, 8, 8), levels=17, **{"latent_dim": 32, "width": 128, **kw})
    cfg = TrainConfig(epochs=epochs, batch_size=50, lr=3e-3, warmup_steps=10)
    records = Trainer(model, (train.images, train.labels), (test.images, test.labels), cfg, tmp_path / name).fit()
    return model.eval(), records[-1], test.images


def test_sparse_codes_are_sparser_and_denoising_reconstructs_corrupted_images_better(tmp_path):
    plain, plain_rec, test = _digits_ae("autoencoder", tmp_path)
    sparse, sparse_rec, _ = _digits_ae("sparse-autoencoder", tmp_path)
    denoising, _, _ = _digits_ae("denoising-autoencoder", tmp_path)
    assert sparse_rec["test_near_zero"] > plain_rec["test_near_zero"] + 0.2
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain_err = plain.reconstruction_error(test, "gaussian", 0.3, g()).mean()
    denoising_err = denoising.reconstruction_error(test, "gaussian", 0.3, g()).mean()
    assert denoising_err < plain_err
    assert plain_rec["test_mse"] < 0.03 and "test_nll" not in plain_rec  # no likelihood, never nats


def test_an_overcomplete_autoencoder_builds_and_trains(tmp_path):
    model, rec, _ = _digits_ae("autoencoder", tmp_path, epochs=2, latent_dim=128)  # 128 > 64 = C*H*W
    assert model.config.latent_dim > model.dims and math.isfinite(rec["test_mse"])


@pytest.mark.parametrize("name", LATENT)
def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=(1, 8, 8), levels=17, latent_dim=4, width=16).eval()
    x = torch.randint(0, 17, (3, 1, 8, 8), dtype=torch.uint8)
    model.save(tmp_path / "m")
    loaded = genzoo.load(tmp_path / "m")
    assert torch.equal(loaded.encode(x), model.encode(x)) and torch.equal(loaded.decode(model.encode(x)),
                                                                          model.decode(model.encode(x)))
    assert loaded.likelihood_kind == ("bound" if name == "vae" else "none")


@pytest.mark.parametrize("bad,match", [(dict(architecture="conv", image_shape=(1, 6, 6)), "divisible by 4"),
                                       (dict(corruption="blur"), "corruption"), (dict(l1=-1.0), "l1")])
def test_autoencoder_config_validation(bad, match):
    with pytest.raises(genzoo.GenzooError, match=match):
        genzoo.models.build("autoencoder", **{"image_shape": (1, 8, 8), "levels": 17, **bad})


def test_vae_config_validation():
    with pytest.raises(genzoo.GenzooError, match="bernoulli decoder needs levels = 2"):
        genzoo.models.build("vae", image_shape=(1, 8, 8), levels=17, decoder_likelihood="bernoulli")
    with pytest.raises(genzoo.GenzooError, match="beta"):
        genzoo.models.build("vae", image_shape=(1, 8, 8), levels=2, beta=0)
    with pytest.raises(genzoo.GenzooError, match="train_samples"):
        genzoo.models.build("vae", image_shape=(1, 8, 8), levels=2, train_samples=0)
    with pytest.raises(genzoo.GenzooError, match="must be 1"):
        genzoo.models.build("vae", image_shape=(1, 8, 8), levels=2, train_samples=5, beta=0.5)


@pytest.mark.parametrize("name", LATENT)
def test_cli_train_eval_reconstruct_interpolate_probe(name, tmp_path, capsys):
    run = tmp_path / name
    assert main(["train", name, "--data", "digits", "--out", str(run), "--epochs", "1", "--batch-size", "100",
                 "--threads", "1", "--latent-dim", "8", "--width", "32", "--architecture", "conv"]) == 0
    assert main(["eval", str(run), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    if name == "vae":
        assert s["likelihood_kind"] == "bound" and math.isfinite(s["nll_nats"])
        assert main(["eval", str(run), "--iwae-k", "20", "--limit", "10", "--json"]) == 0
        iw = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert iw["iwae_k"] == 20 and iw["count"] == 10
        for extra in ([], ["--mean"]):
            assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png"), *extra]) == 0
    else:
        assert s["likelihood_kind"] == "none" and "nll_nats" not in s and 0 < s["mse"] < 1 and s["psnr_db"] > 0
        assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 2  # no distribution
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "r.png"), "-n", "3"]) == 0
    assert main(["interpolate", str(run), "-o", str(tmp_path / "i.png"), "--pairs", "1", "--steps", "3"]) == 0
    capsys.readouterr()
    assert main(["probe", str(run), "--limit", "300", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count(": accuracy") == 4 and "raw pixels" in out and "pca" in out and "random projection" in out
    assert main(["train", name, "--data", "digits", "--out", str(tmp_path / "bad"), "--latent-dim", "0"]) == 2
    assert "latent_dim" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_eval_options_that_do_not_fit_the_model_are_one_line(tmp_path, capsys):
    run = tmp_path / "ae"
    assert main(["train", "autoencoder", "--data", "digits", "--out", str(run), "--epochs", "1", "--batch-size", "500",
                 "--threads", "1", "--width", "16"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--iwae-k", "10"]) == 2
    assert main(["sample", str(run), "-n", "2", "-o", str(tmp_path / "x.png"), "--mean"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "--iwae-k" in err


@pytest.mark.parametrize("name", ["autoencoder", "denoising-autoencoder", "sparse-autoencoder"])
def test_log_prob_of_a_model_without_likelihood_is_a_clear_error(name):
    from genzoo.errors import GenzooError

    model = genzoo.models.build(name, image_shape=(1, 4, 4), levels=2, latent_dim=3, width=8)
    with pytest.raises(GenzooError, match="defines no likelihood"):
        model.log_prob(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
