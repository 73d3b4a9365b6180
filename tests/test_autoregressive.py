"""What every autoregressive model must satisfy: causality, normalisation, exact cached
sampling, save/load. Model-specific receptive fields are checked here too."""

import pytest
import torch

import genzoo
from conftest import AUTOREGRESSIVE, CONDITIONAL, all_images, tiny
from genzoo.models.autoregressive.ar_base import draw_levels, uniforms


def dependency_map(model, image_shape, levels, y=None):
    """deps[c, i, j] = |d logits(c, i, j) / d input| summed over 3 random inputs: float [C,H,W, C,H,W].

    The network input is ``model.scale(images)``: [B, C, H, W], or [B, C, H, W, k] one-hot for
    the Transformer, whose trailing level axis is summed over.
    """
    C, H, W = image_shape
    deps = torch.zeros(C, H, W, C, H, W)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x = model.scale(torch.randint(0, levels, (1, C, H, W), generator=g)).requires_grad_(True)
        logits = model.logits(x, y)  # (1, k, C, H, W)
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    (grad,) = torch.autograd.grad(logits[0, :, c, i, j].sum(), x, retain_graph=True)
                    g_abs = grad[0].abs()
                    deps[c, i, j] += g_abs.flatten(3).sum(3) if g_abs.dim() > 3 else g_abs
    return deps


def earlier(c, i, j, C, H, W):
    """bool [C, H, W]: sub-pixels before (c, i, j) in raster order, channels last."""
    before = torch.zeros(C, H, W, dtype=torch.bool)
    before.view(C, -1)[:, : i * W + j] = True
    before[:c, i, j] = True
    return before


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("image_shape", [(1, 5, 5), (3, 3, 4)])
def test_no_output_depends_on_itself_or_a_later_subpixel(name, image_shape):
    levels = 4
    model = tiny(name, image_shape, levels)
    deps = dependency_map(model, image_shape, levels)
    C, H, W = image_shape
    for c in range(C):
        for i in range(H):
            for j in range(W):
                later = ~earlier(c, i, j, C, H, W)
                assert torch.all(deps[c, i, j][later] == 0), f"logits of {(c, i, j)} see a later sub-pixel"
    assert deps[C - 1, H - 1, W - 1].sum() > 0  # and the last one does see the rest


def test_transformer_sees_every_earlier_pixel_with_one_layer():
    model = tiny("pixel-transformer", (1, 4, 6), 2, num_layers=1, attention_rows=0)  # global attention
    deps = dependency_map(model, (1, 4, 6), 2)
    for i in range(4):
        for j in range(6):
            assert torch.all(deps[0, i, j][earlier(0, i, j, 1, 4, 6)] > 0), f"blind spot at {(i, j)}"


def test_diagonal_bilstm_sees_every_earlier_pixel_but_the_last_of_the_row_above():
    # One layer already covers the whole context (section 3.2), with one exception that follows
    # from the architecture: x(i-1, W-1) reaches row i only through the first type-A
    # convolution's kernel, since every feature at (i-1, W-1) excludes that pixel and the
    # right-to-left scan of row i-1 starts there. So (i, j) is blind to it when j + p < W - 1.
    p = 1  # first_kernel 3
    model = tiny("diagonal-bilstm", (1, 4, 6), 2, num_layers=1, first_kernel=2 * p + 1)
    deps = dependency_map(model, (1, 4, 6), 2)
    for i in range(4):
        for j in range(6):
            seen = deps[0, i, j] > 0
            expected = earlier(0, i, j, 1, 4, 6)
            if i > 0 and j + p < 5:
                expected[0, i - 1, 5] = False
            assert torch.equal(seen, expected), f"receptive field of {(i, j)}"


def test_row_lstm_sees_a_triangle_above():
    # Row LSTM (section 3.1): one layer of 1x3 kernels after a 3x3 type-A convolution widens
    # the view by one column a row upwards (a triangle), and sees only 2 pixels of its own row:
    # it does not capture the whole available context.
    model = tiny("row-lstm", (1, 3, 9), 2, num_layers=1)
    deps = dependency_map(model, (1, 3, 9), 2)
    expected = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 0],
                             [0, 1, 1, 1, 1, 1, 0, 0, 0],
                             [0, 0, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    expected[0, :7] = True
    assert torch.equal(deps[0, 2, 4][0] > 0, expected)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("image_shape,levels", [((1, 2, 2), 2), ((1, 1, 3), 3), ((2, 1, 2), 3)])
def test_probabilities_sum_to_one(name, image_shape, levels):
    model = tiny(name, image_shape, levels)
    with torch.no_grad():
        total = model.log_prob(all_images(image_shape, levels)).double().exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_conditional_models_are_normalised_for_every_class(name):
    model = tiny(name, (1, 2, 2), 2, num_classes=3)
    xs = all_images((1, 2, 2), 2)
    with torch.no_grad():
        logp = [model.log_prob(xs, torch.full((len(xs),), c)) for c in range(3)]
    assert [p.double().exp().sum().item() for p in logp] == pytest.approx([1.0] * 3, abs=1e-5)
    assert not torch.allclose(logp[0], logp[1])  # the label does change the distribution
    with pytest.raises(genzoo.GenzooError, match="labels"):
        model.log_prob(xs)  # a conditional model without its labels is refused, not scored as class 0


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_logits_of_row_i_do_not_change_when_later_rows_are_cut(name):
    # What makes naive sampling of row i on rows 0..i only (crop_rows_when_sampling) exact.
    model = tiny(name, (2, 5, 4), 3)
    x = model.scale(torch.randint(0, 3, (2, 2, 5, 4)))
    full = model.logits(x)
    for i in range(5):
        assert torch.allclose(model.logits(x[:, :, : i + 1])[:, :, :, i], full[:, :, :, i], atol=1e-6)


@pytest.mark.parametrize("name,image_shape,conditional",
                         [(n, s, False) for n in AUTOREGRESSIVE for s in [(1, 5, 4), (3, 4, 3)]]
                         + [(n, (3, 3, 3), True) for n in CONDITIONAL])
def test_cached_sampler_gives_the_full_pass_logits_at_every_step(name, image_shape, conditional):
    # Teacher forcing: feed a fixed image sub-pixel by sub-pixel; every step's logits must be
    # those of one full forward pass.
    model = tiny(name, image_shape, 4, **({"num_classes": 3} if conditional else {})).eval()
    C, H, W = image_shape
    images = torch.randint(0, 4, (3, C, H, W), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2]) if conditional else None
    x = model.scale(images)
    with torch.no_grad():
        full = model.logits(x, y)
        sampler = model.cached_sampler(3, y)
        for i in range(H):
            for j in range(W):
                for c in range(C):
                    step = sampler.logits(x, c, i, j)
                    assert torch.allclose(step, full[:, :, c, i, j], atol=1e-4), (c, i, j)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_cached_and_naive_sampling_draw_the_same_images(name):
    model = tiny(name, (3, 4, 3), 4).eval()
    a = model.sample(6, generator=torch.Generator().manual_seed(1))
    b = model.sample(6, generator=torch.Generator().manual_seed(1), naive=True)
    assert torch.equal(a, b)
    # completion: the cache catches up over the known sub-pixels it is never asked about
    prefix = torch.randint(0, 4, (6, 3, 4, 3), dtype=torch.uint8)
    known = torch.zeros(3, 4, 3, dtype=torch.bool)
    known[:, :2] = True
    known[:2, 2, 1] = True  # a partly known pixel
    a = model.sample(6, generator=torch.Generator().manual_seed(2), prefix=prefix, known=known)
    b = model.sample(6, generator=torch.Generator().manual_seed(2), prefix=prefix, known=known, naive=True)
    assert torch.equal(a, b) and torch.equal(a[:, known], prefix[:, known])


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_loss_reports_nats_and_bits(name):
    model = tiny(name, (1, 4, 4), 2)
    x = torch.randint(0, 2, (3, 1, 4, 4), dtype=torch.uint8)
    out = model.loss(x)
    assert out["nll"].shape == (3,)
    assert torch.allclose(out["loss"], out["nll"].mean() / 16)
    assert torch.allclose(out["bits_per_dim"], out["nll"] / (16 * torch.log(torch.tensor(2.0))))
    assert model.likelihood_kind == "exact"


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_save_load_round_trip_gives_identical_log_prob(name, tmp_path):
    model = tiny(name, (1, 4, 4), 3)
    x = torch.randint(0, 3, (4, 1, 4, 4), dtype=torch.uint8)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = genzoo.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_fixed_seed_gives_the_same_samples(name):
    model = tiny(name, (1, 4, 4), 3)
    a = model.sample(5, generator=torch.Generator().manual_seed(7))
    b = model.sample(5, generator=torch.Generator().manual_seed(7))
    c = model.sample(5, generator=torch.Generator().manual_seed(8))
    assert a.dtype == torch.uint8 and a.shape == (5, 1, 4, 4) and int(a.max()) < 3
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_runs_in_float64(name):
    model = tiny(name, (1, 4, 4), 3).double()
    x = torch.randint(0, 3, (2, 1, 4, 4), dtype=torch.uint8)
    assert model.log_prob(x).dtype == torch.float64
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("name,bad,match", [
    ("row-lstm", dict(input_kernel=4), "odd"),
    ("diagonal-bilstm", dict(hidden_channels=0), "positive"),
    ("pixel-transformer", dict(embed_dim=10, num_heads=4), "multiple of num_heads"),
    ("pixel-transformer", dict(attention_rows=-1), "attention_rows"),
])
def test_config_validation(name, bad, match):
    with pytest.raises(genzoo.GenzooError, match=match):
        genzoo.models.build(name, image_shape=(1, 4, 4), levels=2, **bad)


def _sample_checking_the_cache(model, n, generator, y=None):
    """Draw n images with the cached sampler, as ``sample`` does, and at every step compare its
    logits with one full pass of the network on the images as drawn so far (the state the cache
    really runs in, not a finished image). Returns (images, largest |cached - full|)."""
    C, H, W = model.image_shape
    x = torch.zeros(n, C, H, W, dtype=torch.uint8)
    xs = model.scale(x)
    u = uniforms(n, model.image_shape, generator, "cpu")  # as sample() draws them: up front, one per sub-pixel
    sampler, worst = model.cached_sampler(n, y), 0.0
    for i in range(H):
        for j in range(W):
            for c in range(C):
                cached = sampler.logits(xs, c, i, j)  # (n, k)
                full = model.logits(model.scale(x), y)[:, :, c, i, j]
                worst = max(worst, (cached - full).abs().max().item())
                draw = draw_levels(cached, u[:, c, i, j])
                x[:, c, i, j] = draw.to(torch.uint8)
                xs[:, c, i, j] = model.scale(x[:, c, i, j].view(n, 1, 1, 1)).view(xs[:, c, i, j].shape)
    return x, worst


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("image_shape,levels", [((1, 6, 6), 2), ((3, 4, 4), 4)])
def test_the_cache_during_sampling_matches_the_full_pass_at_the_defaults(name, image_shape, levels):
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=image_shape, levels=levels).eval()
    with torch.no_grad():
        # 16 images: the check is per step of the sampler, not per image (64 cost 3x the time for nothing)
        x, worst = _sample_checking_the_cache(model, 16, torch.Generator().manual_seed(0))
        assert worst < 1e-4, worst
        # the same 16 images from sample(): cached (the default) and naive
        assert torch.equal(x, model.sample(16, generator=torch.Generator().manual_seed(0)))
        assert torch.equal(x, model.sample(16, generator=torch.Generator().manual_seed(0), naive=True))


@pytest.mark.parametrize("name", CONDITIONAL)
def test_the_cache_during_sampling_matches_the_full_pass_for_a_conditional_model(name):
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=(3, 3, 4), levels=3, num_classes=3).eval()
    with torch.no_grad():
        _, worst = _sample_checking_the_cache(model, 3, torch.Generator().manual_seed(0), torch.tensor([0, 1, 2]))
    assert worst < 1e-4, worst


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_rgb_at_the_defaults_is_causal_and_normalised(name):
    """The defaults (widths no multiple of 3) on colour images: R before G before B within a pixel."""
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=(3, 2, 2), levels=2)
    deps = dependency_map(model, (3, 2, 2), 2)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                assert not (deps[c, i, j][~earlier(c, i, j, 3, 2, 2)] > 0).any(), (c, i, j)
    assert (deps[2, 1, 1][earlier(2, 1, 1, 3, 2, 2)] > 0).any()  # and it does see earlier sub-pixels
    with torch.no_grad():
        total = model.log_prob(all_images((3, 2, 2), 2)).double().exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


# The Transformer's attention variants: local (a window of rows) and the relative position bias.
# (The default is local attention over one row above with the bias; the generic tests run it.)
ATTENTION = [dict(attention_rows=0, relative_bias=False), dict(attention_rows=1, relative_bias=False),
             dict(attention_rows=2, relative_bias=True), dict(attention_rows=0, relative_bias=True)]


def _with_random_bias(model):
    """Zero-initialised biases would hide a bias indexed wrongly: give them random values."""
    with torch.no_grad():
        for block in model.blocks:
            if block.attn.bias is not None:
                block.attn.bias.normal_()
    return model


@pytest.mark.parametrize("options", ATTENTION)
@pytest.mark.parametrize("image_shape", [(1, 5, 3), (2, 4, 3)])
def test_transformer_attention_variants_are_causal_normalised_and_cached_exactly(options, image_shape):
    model = _with_random_bias(tiny("pixel-transformer", image_shape, 3, **options)).eval()
    C, H, W = image_shape
    deps = dependency_map(model, image_shape, 3)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                assert torch.all(deps[c, i, j][~earlier(c, i, j, C, H, W)] == 0), (c, i, j)
    with torch.no_grad():
        _, worst = _sample_checking_the_cache(model, 4, torch.Generator().manual_seed(0))
        assert worst < 1e-4, worst
        small = _with_random_bias(tiny("pixel-transformer", (1, 3, 2), 2, **options))
        assert small.log_prob(all_images((1, 3, 2), 2)).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, model.sample(4, generator=torch.Generator().manual_seed(1), naive=True))


@pytest.mark.parametrize("options", ATTENTION + [dict(attention_rows=1, relative_bias=True)])
def test_transformer_prefill_of_known_rows_then_steps_match_the_full_pass(options):
    # Completion: the sampler is first asked about row r (rows above known), fills its buffers in one full pass,
    # then steps; from r = R + 2 on, its first step also moves the prefilled window up a row.
    model = _with_random_bias(tiny("pixel-transformer", (2, 6, 3), 4, **options)).eval()
    images = torch.randint(0, 4, (3, 2, 6, 3), dtype=torch.uint8)
    with torch.no_grad():
        x = model.scale(images)
        full = model.logits(x)
        for r in range(1, 5):
            sampler = model.cached_sampler(3)
            for i in range(r, 6):
                for j in range(3):
                    for c in range(2):
                        assert torch.allclose(sampler.logits(x, c, i, j), full[:, :, c, i, j], atol=1e-5), (r, c, i, j)


@pytest.mark.parametrize("rows", [1, 2])
def test_local_attention_sees_exactly_its_window_with_one_layer(rows):
    # one layer: (c, i, j) sees the earlier sub-pixels of rows i - R .. i and nothing above but the
    # last sub-pixel of row i - R - 1 (the input at position t is the level of sub-pixel t - 1)
    C, H, W = 2, 5, 3
    model = tiny("pixel-transformer", (C, H, W), 2, num_layers=1, attention_rows=rows)
    deps = dependency_map(model, (C, H, W), 2)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                expected = earlier(c, i, j, C, H, W)
                expected[:, : max(0, i - rows)] = False
                if i - rows - 1 >= 0:
                    expected[C - 1, i - rows - 1, W - 1] = True
                assert torch.equal(deps[c, i, j] > 0, expected), (c, i, j)


@pytest.mark.parametrize("relative_bias", [False, True])
def test_local_attention_with_a_window_over_the_whole_image_is_global_attention(relative_bias):
    # the blocked local path and the global one are two computations of the same function
    image_shape = (2, 4, 3)
    glob = _with_random_bias(tiny("pixel-transformer", image_shape, 3, relative_bias=relative_bias,
                                  attention_rows=0)).double()
    local = tiny("pixel-transformer", image_shape, 3, relative_bias=relative_bias, attention_rows=3).double()
    local.load_state_dict(glob.state_dict())
    x = glob.scale(torch.randint(0, 3, (5, *image_shape)))
    assert torch.allclose(local.logits(x), glob.logits(x), atol=1e-10)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_samples_follow_the_models_own_probabilities(name):
    """The draw (the inverse CDF of uniforms drawn up front) samples P itself: 4,000 images of 3 sub-pixels
    against the model's exact probabilities of all 8 (a chi-square test)."""
    from scipy.stats import chisquare

    model = tiny(name, image_shape=(1, 1, 3), levels=2).eval()
    with torch.no_grad():
        probs = model.log_prob(all_images((1, 1, 3), 2)).double().exp()  # (8,) in all_images' order
        x = model.sample(4000, generator=torch.Generator().manual_seed(0))
    index = (x.view(4000, 3).long() * torch.tensor([4, 2, 1])).sum(1)
    counts = torch.bincount(index, minlength=8)
    order = (all_images((1, 1, 3), 2).view(8, 3).long() * torch.tensor([4, 2, 1])).sum(1)
    assert chisquare(counts[order].numpy(), (4000 * probs / probs.sum()).numpy()).pvalue > 1e-3, counts.tolist()


def test_draw_levels_is_the_inverse_cdf_of_the_softmax_at_the_temperature():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]]).expand(5, -1)
    u = torch.tensor([0.0, 0.24, 0.26, 0.74, 0.9999])
    assert draw_levels(logits, u).tolist() == [0, 0, 1, 2, 3]
    sharp = torch.tensor([[0.0, 1.0]]).expand(2, -1)  # at temperature 0.01: level 1 unless u is ~1
    assert draw_levels(sharp, torch.tensor([0.001, 0.5]), temperature=0.01).tolist() == [1, 1]
    assert draw_levels(sharp, torch.tensor([0.2, 0.3]), temperature=1.0).tolist() == [0, 1]  # p0 = 0.269
