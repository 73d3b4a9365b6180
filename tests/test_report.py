"""The HTML report (honest leaderboards, self-contained, rendered in a real browser), TensorBoard, grids."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genzoo import cli, grids, models

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"
TINY = ["--epochs", "2", "--batch-size", "64", "--threads", "1", "--seed", "0"]


def train(out, model, *options, data_name="digits"):
    assert cli.main(["train", model, "--data", data_name, "--out", str(out), *TINY, *options]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four tiny runs: an exact, a bound and a likelihood-free model on digits, and one on 2-level digits."""
    root = tmp_path_factory.mktemp("runs")
    return [
        train(root / "pixelcnn", "pixelcnn", "--hidden-channels", "8", "--num-layers", "2", "--head-channels", "16"),
        train(root / "vae", "vae", "--latent-dim", "4", "--width", "32"),
        train(root / "ae", "denoising-autoencoder", "--latent-dim", "4", "--width", "32"),
        train(root / "binary", "pixelcnn", "--hidden-channels", "8", "--num-layers", "2", "--head-channels", "16",
              "--levels", "2"),
    ]


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))  # the feature network's cache
        for run in runs[:2]:  # sample quality for the exact and the bound model: the trade-off view
            assert cli.main(["eval", str(run), "--fid", "40", "--threads", "1"]) == 0
        assert cli.main(["report", *map(str, runs), "-o", str(out), "--samples", "8", "--threads", "1"]) == 0
    return out


def leaderboard_rows(html):
    """[(table index, cells)] of every leaderboard row, tags stripped."""
    out = []
    for t, table in enumerate(re.findall(r"<table class=leaderboard>(.*?)</table>", html, re.S)):
        for row in re.findall(r"<tr class=leader>(.*?)</tr>", table, re.S):
            out.append((t, [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]))
    return out


def test_leaderboards_group_by_dataset_and_rank_only_exact_figures(page, runs):
    html = page.read_text()
    rows = leaderboard_rows(html)
    assert len(rows) == len(runs)
    tables = {cells[1].rsplit("/", 1)[-1]: (t, cells) for t, cells in rows}
    # 17-level digits and 2-level digits are different datasets: never ranked together
    assert tables["binary"][0] != tables["pixelcnn"][0]
    assert tables["pixelcnn"][0] == tables["vae"][0] == tables["ae"][0]
    pcnn, vae, ae = tables["pixelcnn"][1], tables["vae"][1], tables["ae"][1]
    assert pcnn[0] == "1" and pcnn[4] == "exact" and float(pcnn[5]) > 0
    assert vae[0] == "bound" and vae[4] == "bound" and vae[5].startswith("&le; ")  # never ranked as if exact
    assert ae[0] == "&mdash;" and ae[4] == "none" and ae[5] == "&mdash;" and "reconstruction MSE" in ae[10]
    assert tables["binary"][1][0] == "1"  # ranked first in its own group
    # the figures are the runs' own last test evaluations
    import json
    last = json.loads((runs[0] / "metrics.jsonl").read_text().splitlines()[-1])
    assert pcnn[5] == f"{last['test_nll']:.3f}"


def test_report_is_self_contained(page):
    html = page.read_text()
    srcs = re.findall(r"src='([^']*)'", html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", html)  # nothing from the network
    assert "<link" not in html and "<script" not in html
    assert html.count("<section class=run") == 4
    # each model shows what it has: completions (autoregressive), reconstructions and interpolations (codes)
    assert html.count("<figcaption>completions:") == 2 and html.count("<figcaption>reconstructions:") == 2
    assert html.count("<figcaption>interpolations:") == 2
    assert "original, corrupted, reconstruction" in html  # the denoising model shows its corruption
    # per dataset: the likelihood / sample-quality trade-off (where --fid was measured) and the curves
    # against wall clock; per sampling run: its samples beside their nearest training images
    assert html.count("<figcaption>test bits/dim against FID") == 1
    assert html.count("<figcaption>the test curves of every run against training wall clock") == 2
    assert html.count("<figcaption>memorisation check:") == 3


def test_report_renders_in_headless_chromium(page, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no chromium/chromedriver here (make browser installs Debian's, as root)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,2000"):
        options.add_argument(a)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        browser.get(page.as_uri())
        rows = browser.execute_script("return [...document.querySelectorAll('tr.leader')].map(r => "
                                      "r.cells[2].textContent)")
        assert sorted(rows) == sorted(["pixelcnn", "vae", "denoising-autoencoder", "pixelcnn"])
        widths = browser.execute_script(
            "return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == page.read_text().count("<img") and all(w > 0 for w in widths), widths
        shot = tmp_path / "report.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_out_of_distribution_histograms(tmp_path):
    # only data already on disk: a test never downloads
    if not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian fashion-mnist not installed (make data)")
    if not (SHARED / "binarized_mnist_test.amat.gz").exists():
        pytest.skip("shared binarized MNIST not present")
    run = tmp_path / "fmnist"
    assert cli.main(["train", "pixelcnn", "--data", "fashion-mnist", "--binarize", "threshold", "--out", str(run),
                     "--minutes", "0.03", "--eval-limit", "64", "--hidden-channels", "8", "--num-layers", "2",
                     "--head-channels", "16", "--threads", "1"]) == 0
    out = tmp_path / "ood.html"
    assert cli.main(["report", str(run), "-o", str(out), "--samples", "4", "--ood", "binarized-mnist",
                     "--ood-limit", "64", "--threads", "1"]) == 0
    html = out.read_text()
    m = re.search(r"mean ([\d.]+) bits/dim on its own test set, ([\d.]+) on binarized-mnist", html)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0
    assert "alt='ood histogram'" in html


def test_bad_report_requests_are_one_line_and_touch_nothing(runs, tmp_path, capsys):
    existing = tmp_path / "old.html"
    existing.write_text("keep me")
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    cases = [
        ["report", str(tmp_path / "missing"), "-o", str(existing)],
        ["report", str(not_a_run), "-o", str(existing)],
        ["report", str(runs[0]), "-o", str(tmp_path / "report.png")],
        ["report", str(runs[0]), "-o", str(tmp_path / "no" / "such" / "r.html")],
        ["report", str(runs[0]), "-o", str(existing), "--ood", "imagenet"],
        ["report", str(runs[0]), "-o", str(existing), "--ood", "fashion-mnist"],  # 28x28 against an 8x8 model
    ]
    for argv in cases:
        capsys.readouterr()
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("genzoo: error:"), (argv, err)
    assert existing.read_text() == "keep me"


def test_grids_have_a_visible_gap():
    x = torch.full((2, 1, 8, 8), 16, dtype=torch.uint8)  # two white 8x8 images
    pic = grids.grid(x, 17, nrow=2, scale=grids.default_scale(8))
    assert grids.default_scale(8) == 8 and grids.default_scale(28) == 2
    p = (pic.shape[1] - 2 * 64) // 3  # the gap: left edge, between the two, right edge
    assert p >= 2 and pic.shape == (64 + 2 * p, 128 + 3 * p)
    assert (pic[p:p + 64, p:p + 64] == 255).all() and (pic[p:p + 64, 2 * p + 64:2 * p + 128] == 255).all()
    gap, top = pic[:, p + 64:2 * p + 64], pic[:p]
    assert np.array_equal(gap, grids.gap_pattern(*pic.shape)[:, p + 64:2 * p + 64]) and set(np.unique(top)) == {0, 255}


@pytest.mark.parametrize("value", [0, 8, 16])
def test_the_gap_contrasts_with_any_grey_content(value):
    """Images of one grey level (black, the middle level of 17, white): every gap row holds both
    black and white, so it differs from the content (a plain grey gap vanished beside level 8)."""
    x = torch.full((4, 1, 8, 8), value, dtype=torch.uint8)
    pic = grids.grid(x, 17, nrow=2, scale=4)
    p = (pic.shape[1] - 2 * 32) // 3
    for strip in (pic[:p], pic[:, :p].T, pic[:, p + 32:2 * p + 32].T):
        for line in strip:
            assert set(line.tolist()) == {0, 255}


def test_tensorboard_logs_scalars_and_samples_and_changes_no_weight(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    opts = ["--hidden-channels", "8", "--num-layers", "2", "--head-channels", "16"]
    logged = train(tmp_path / "tb", "pixelcnn", *opts, "--tensorboard")
    plain = train(tmp_path / "plain", "pixelcnn", *opts)
    events = EventAccumulator(str(logged / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("loss/train", "bits_per_dim/test", "learning_rate", "images_per_s"):
        assert tag in tags["scalars"]
    assert len(events.Scalars("bits_per_dim/test")) == 2 and "samples" in tags["images"]
    # sampling for TensorBoard uses its own generator: the training is bitwise unchanged
    a, b = models.load_model(logged), models.load_model(plain)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not (plain / "tensorboard").exists()
