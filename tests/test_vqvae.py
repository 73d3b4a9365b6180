"""The VQ-VAE and its learned prior: the bound is its two terms and never exceeds -log P(x) (summed over
every tiny image, exp(-bound) <= 1), the codebook's moving averages and restarts, the straight-through
gradient, codes that survive decode -> encode after training, save/load, and the two-stage command line."""

import json
import math

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.models.latent.vqvae import CodePrior
from genzoo.training.trainer import TrainConfig, Trainer
from conftest import all_images, tiny
import conftest

VQ_TINY = conftest.TINY["vq-vae"]


def perturbed_pair(seed=0):
    """A VQ-VAE on 1x2x2 binary images (a 1x1 grid of 4 codes) and a PixelCNN prior over its codes, random."""
    torch.manual_seed(seed)
    vq = genzoo.models.build("vq-vae", image_shape=(1, 2, 2), levels=2, **VQ_TINY).double().eval()
    with torch.no_grad():
        vq.quantizer.codebook.copy_(torch.randn(4, 3, dtype=torch.float64))
    prior = tiny("pixelcnn", image_shape=(1, 1, 1), levels=4, seed=seed).double().eval()
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return vq, prior


def test_the_bound_is_its_two_terms_and_never_above_minus_log_p():
    vq, prior = perturbed_pair()
    pair = CodePrior(vq, prior)
    x = all_images((1, 2, 2), 2)  # all 16 images
    out = pair.loss(x)
    codes = vq.codes(x)
    prior_term = -prior.log_prob(codes[:, None].to(torch.uint8))
    decoder_term = -vq.log_likelihood(x, codes)
    assert torch.allclose(out["nll"], prior_term + decoder_term)
    assert torch.allclose(out["prior_nll"], prior_term) and torch.allclose(out["decoder_nll"], decoder_term)
    # the true likelihood of the pair, every code summed: P(x) = sum_z p(z) p(x | z)
    every_code = torch.arange(4).view(4, 1, 1)
    log_pz = prior.log_prob(every_code[:, None].to(torch.uint8))  # (4,)
    log_px_z = torch.stack([vq.log_likelihood(x, z.expand(16, 1, 1)) for z in every_code], 1)  # (16, 4)
    log_px = torch.logsumexp(log_pz + log_px_z, 1)
    assert torch.logsumexp(log_px, 0).item() == pytest.approx(0.0, abs=1e-10)  # a distribution over images
    assert (out["nll"] >= -log_px - 1e-10).all()  # the bound: -log P(x) <= -log p(z(x)) - log p(x | z(x))
    assert torch.logsumexp(-out["nll"], 0).item() <= 1e-10  # sum_x exp(-bound(x)) <= 1
    alone = vq.loss(x)  # the VQ-VAE alone: the uniform prior, h w log K
    assert torch.allclose(alone["prior_nll"], torch.full((16,), math.log(4), dtype=torch.float64))
    assert torch.logsumexp(-alone["nll"], 0).item() <= 1e-10


def test_the_straight_through_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    vq = genzoo.models.build("vq-vae", image_shape=(1, 4, 4), levels=2, **VQ_TINY)
    x = torch.randint(0, 2, (8, 1, 4, 4), dtype=torch.uint8)
    vq.train()
    vq.loss(x)  # the first step restarts every code from the batch
    vq.config.commitment = 0.0  # only the reconstruction's gradient, passed straight through the quantizer
    vq.zero_grad()
    vq.loss(x)["loss"].backward()
    last = vq.encoder[-1].weight
    assert last.grad is not None and last.grad.abs().sum() > 0
    assert all(p.grad is not None for p in vq.decoder.parameters())
    assert not any(p.requires_grad for p in vq.quantizer.buffers())  # the codebook moves by averages, not gradients


def test_the_codebook_moves_by_moving_averages_and_dead_codes_restart():
    torch.manual_seed(0)
    vq = genzoo.models.build("vq-vae", image_shape=(1, 4, 4), levels=2, **{**VQ_TINY, "ema_decay": 0.9})
    q = vq.quantizer
    q.ema_count.fill_(50.0)
    q.ema_sum.copy_(q.codebook * 50.0)
    z = torch.randn(5, 3, 2, 2)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    codes = q.nearest(flat)
    count = torch.bincount(codes, minlength=4).float()
    sums = torch.stack([flat[codes == k].sum(0) for k in range(4)])
    ema_count, ema_sum = 0.9 * 50.0 + 0.1 * count, 0.9 * q.ema_sum + 0.1 * sums
    n = ema_count.sum()
    expected = ema_sum / ((ema_count + 1e-5) / (n + 4e-5) * n)[:, None]
    q.train()
    q(z)
    assert torch.allclose(q.ema_count, ema_count) and torch.allclose(q.codebook, expected, atol=1e-6)
    q.ema_count[2] = 0.0  # code 2 falls out of use: the next step restarts it at one of the batch's vectors
    q(z)
    assert any(torch.allclose(q.codebook[2], v) for v in flat) and q.ema_count[2] == q.threshold
    q.eval()
    before = q.codebook.clone()
    q(z)
    assert torch.equal(q.codebook, before)  # evaluation never moves it


def _blocks(n, generator):
    """4x4 binary images made of four 2x2 blocks, each all 0 or all 1: a code a block."""
    cells = torch.randint(0, 2, (n, 1, 2, 2), generator=generator, dtype=torch.uint8)
    return cells.repeat_interleave(2, 2).repeat_interleave(2, 3)  # (n, 1, 4, 4)


def test_a_trained_toy_model_gets_its_codes_back_through_decode_and_encode(tmp_path):
    g = torch.Generator().manual_seed(0)
    train, test = _blocks(2000, g), _blocks(200, g)
    torch.manual_seed(0)
    vq = genzoo.models.build("vq-vae", image_shape=(1, 4, 4), levels=2, codebook_size=8, code_dim=4,
                             hidden_channels=16, num_downsamples=1, num_res_blocks=1)
    cfg = TrainConfig(epochs=8, batch_size=100, lr=1e-2, warmup_steps=10)
    records = Trainer(vq, (train, torch.zeros(2000, dtype=torch.long)), (test, torch.zeros(200, dtype=torch.long)),
                      cfg, tmp_path / "vq").fit()
    vq.eval()
    assert records[-1]["test_decoder_nll"] < 0.5  # reconstructs the 16 patterns almost surely
    assert records[-1]["test_codes_in_use"] >= 2
    codes = vq.codes(test)
    assert torch.equal(vq.codes(vq.decode_codes(codes)), codes)
    assert torch.equal(vq.decode_codes(codes), test)


def test_save_load_and_the_prior_folder_loads_as_one_model_of_images(tmp_path):
    vq, prior = perturbed_pair()
    vq, prior = vq.float(), prior.float()
    vq.save(tmp_path / "vq")
    prior.save(tmp_path / "prior")
    genzoo.models.link_codes(tmp_path / "prior", tmp_path / "vq")
    x = all_images((1, 2, 2), 2)
    assert torch.equal(genzoo.load(tmp_path / "vq").log_prob(x), vq.log_prob(x))
    pair = genzoo.load(tmp_path / "prior")
    assert isinstance(pair, CodePrior) and torch.allclose(pair.log_prob(x), CodePrior(vq, prior).log_prob(x))
    assert pair.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 2, 2)
    plain = genzoo.models.load_model(tmp_path / "prior", plain=True)
    assert plain.name == "pixelcnn"
    (tmp_path / "vq").rename(tmp_path / "elsewhere")
    with pytest.raises(genzoo.GenzooError, match="not there now"):
        genzoo.load(tmp_path / "prior")
    with pytest.raises(genzoo.GenzooError, match="two folders"):
        CodePrior(vq, prior).save(tmp_path / "both")


def test_completion_through_the_codes_keeps_the_known_pixels_and_whole_known_codes():
    vq, prior = perturbed_pair()
    pair = CodePrior(vq.float(), prior.float())
    x = torch.randint(0, 2, (4, 1, 2, 2), dtype=torch.uint8)
    known = torch.zeros(1, 2, 2, dtype=torch.bool)
    known[0, 0] = True  # the top row: the only code's patch is not wholly known, so the code is drawn
    out = pair.sample(4, generator=torch.Generator().manual_seed(0), prefix=x, known=known)
    assert torch.equal(out[:, :, 0], x[:, :, 0])
    full = pair.sample(4, generator=torch.Generator().manual_seed(1), prefix=x, known=torch.ones(1, 2, 2,
                                                                                                 dtype=torch.bool))
    assert torch.equal(full, x)


def test_configuration_errors_are_clear():
    for bad, match in [(dict(image_shape=(1, 6, 6)), "divisible by 4"), (dict(codebook_size=300), "codebook_size"),
                       (dict(ema_decay=1.0), "ema_decay"), (dict(decoder_likelihood="bernoulli", levels=4),
                                                            "bernoulli")]:
        with pytest.raises(genzoo.GenzooError, match=match):
            genzoo.models.build("vq-vae", **{"image_shape": (1, 4, 4), "levels": 2, **bad})
    vq, _ = perturbed_pair()
    with pytest.raises(genzoo.GenzooError, match="not a prior of this VQ-VAE"):
        CodePrior(vq, tiny("pixelcnn", image_shape=(1, 1, 1), levels=3))


def test_cli_two_stages_train_sample_complete_eval_report(tmp_path, capsys):
    vq_run, prior_run = tmp_path / "vq", tmp_path / "prior"
    assert main(["train", "vq-vae", "--data", "digits", "--out", str(vq_run), "--epochs", "1", "--batch-size", "250",
                 "--threads", "1", "--codebook-size", "8", "--hidden-channels", "8", "--num-res-blocks", "1"]) == 0
    assert main(["train", "gated-pixelcnn", "--data", f"codes:{vq_run}", "--out", str(prior_run), "--epochs", "1",
                 "--batch-size", "250", "--threads", "1", "--conditional", "--hidden-channels", "4", "--num-layers",
                 "1",
                 "--head-channels", "8"]) == 0
    assert main(["train", "--resume", str(prior_run), "--epochs", "2"]) == 0  # a prior resumes on the same codes
    from genzoo.cli.listing import describe_run

    assert describe_run(prior_run)["figure"] is None  # its epochs scored the codes: no figure of the images yet
    assert main(["sample", str(prior_run), "-n", "4", "-o", str(tmp_path / "s.png"), "--label", "3"]) == 0
    assert main(["complete", str(prior_run), "-o", str(tmp_path / "c.png"), "-n", "2"]) == 0
    capsys.readouterr()
    assert main(["eval", str(prior_run), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["likelihood_kind"] == "bound" and s["count"] == 297 and s["dims"] == 64  # the images' test set
    assert s["nll_nats"] == pytest.approx(s["terms"]["prior_nll"] + s["terms"]["decoder_nll"])
    assert describe_run(prior_run)["figure"]["value"] == pytest.approx(s["nll_nats"])  # the images' bound
    assert main(["report", str(vq_run), str(prior_run), "-o", str(tmp_path / "r.html"), "--samples", "4"]) == 0
    assert "vq-vae+prior" in (tmp_path / "r.html").read_text()
    capsys.readouterr()
    assert main(["reconstruct", str(prior_run), "-o", str(tmp_path / "r.png")]) == 2  # the prior has no code; its
    err = capsys.readouterr().err  # VQ-VAE has, and the line names the command that reconstructs through it
    assert f"genzoo reconstruct {vq_run.resolve()}" in err and err.count("\n") == 1
    assert main(["reconstruct", str(vq_run), "-o", str(tmp_path / "r.png")]) == 0
    for bad in (["train", "pixelcnn", "--data", f"codes:{prior_run}", "--out", str(tmp_path / "b1")],  # not a vq-vae
                ["train", "pixelcnn", "--data", f"codes:{vq_run}", "--out", str(tmp_path / "b2"), "--levels", "4"],
                ["train", "pixelcnn", "--data", f"codes:{tmp_path / 'none'}", "--out", str(tmp_path / "b3")]):
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("genzoo: error:")
    assert not any((tmp_path / b).exists() for b in ("b1", "b2", "b3"))
    for model in [n for n in genzoo.models.names() if not genzoo.models.get(n).raster_order]:  # before any training
        assert main(["train", model, "--data", f"codes:{vq_run}", "--out", str(tmp_path / model)]) == 2
        err = capsys.readouterr().err
        assert f"{model} cannot be a prior of codes" in err and "pixelcnn" in err and err.count("\n") == 1
        assert not (tmp_path / model).exists()
