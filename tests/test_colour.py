"""Colour and the user's own images: folders of pictures as data, colour MNIST, CIFAR-10's
binary format, and every model's defaults on C = 1 and C = 3."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo import data
from genzoo.data import formats
from genzoo.cli import main
from genzoo.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"
needs_binarized = pytest.mark.skipif(not SHARED.is_dir(), reason="the shared binarized MNIST is not beside the "
                                                                 "checkout")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # image caches go to the test's own folder


def picture_folder(root: Path, n: int = 10, grey: bool = False) -> Path:
    """Two class folders of mixed-size pictures (PNG and JPEG), seeded."""
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            w, h = (int(v) for v in rng.integers(9, 30, 2))
            arr = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_a_folder_of_pictures_is_a_dataset_with_labels_and_a_seeded_split(tmp_path):
    folder = picture_folder(tmp_path / "pics")
    train = data.load(str(folder), "train", image_size=8)
    test = data.load(str(folder), "test", image_size=8)
    assert train.images.shape == (18, 3, 8, 8) and test.images.shape == (2, 3, 8, 8)
    assert train.images.dtype == torch.uint8 and train.levels == 256 and train.num_classes == 2
    assert set(train.labels.tolist()) | set(test.labels.tolist()) == {0, 1}
    again = data.load(str(folder), "train", image_size=8)  # from the cache, the same images
    assert torch.equal(again.images, train.images)
    grey = data.load(str(folder), "train", image_size=8, grayscale=True)
    assert grey.images.shape == (18, 1, 8, 8)


def test_train_and_test_subfolders_are_the_splits_and_a_changed_folder_is_decoded_again(tmp_path):
    root = tmp_path / "pics"
    picture_folder(root / "train", n=3)
    picture_folder(root / "test", n=1)
    assert len(data.load(str(root), "train", image_size=4)) == 6 and len(data.load(str(root), "test",
                                                                                   image_size=4)) == 2
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "test" / "cat" / "new.png")
    assert len(data.load(str(root), "test", image_size=4)) == 3  # the cache key follows the files


def test_grey_pictures_give_one_channel_and_mixed_sizes_need_image_size(tmp_path):
    folder = picture_folder(tmp_path / "grey", n=4, grey=True)
    assert data.load(str(folder), "train", image_size=6).images.shape[1] == 1
    with pytest.raises(DataError, match="--image-size"):
        data.load(str(folder), "train")


@pytest.mark.parametrize("problem,match", [("broken", "not an image Pillow can read"), ("empty", "no image files"),
                                           ("loose", "loose files")])
def test_bad_folders_are_one_clear_error_and_leave_no_run_folder(tmp_path, capsys, problem, match):
    folder = tmp_path / "pics"
    if problem == "empty":
        folder.mkdir()
    else:
        picture_folder(folder, n=3)
    if problem == "broken":
        (folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    if problem == "loose":
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(folder / "stray.png")
    out = tmp_path / "run"
    assert main(["train", "pixelcnn", "--data", str(folder), "--image-size", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and not out.exists()
    if problem == "broken":
        assert "broken.png" in err


def test_image_size_is_for_folders_only(capsys, tmp_path):
    assert main(["train", "pixelcnn", "--data", "digits", "--image-size", "8", "--out", str(tmp_path / "r")]) == 2
    assert "folder of images" in capsys.readouterr().err


@pytest.fixture(scope="module")
def shared_pictures(tmp_path_factory):
    return picture_folder(tmp_path_factory.mktemp("pictures") / "pics", n=6)


@pytest.mark.parametrize("name", genzoo.models.names())
def test_every_model_trains_at_its_defaults_on_rgb_pictures_and_draws_rgb(name, shared_pictures, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", name, "--data", str(shared_pictures), "--image-size", "8", "--out", str(run), "--epochs", "1",
                 "--batch-size", "5", "--warmup-steps", "1", "--threads", "1"]) == 0
    model = genzoo.load(run)
    assert model.image_shape == (3, 8, 8) and model.levels == 256
    picture = tmp_path / "p.png"
    command = ["sample", str(run), "-n", "4"] if model.can_sample else ["reconstruct", str(run), "-n", "2"]
    assert main([*command, "-o", str(picture)]) == 0
    assert Image.open(picture).mode == "RGB"
    assert main(["eval", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["count"] == 1  # 10% of 12 pictures, seeded


@pytest.mark.parametrize("name", genzoo.models.names())
@pytest.mark.parametrize("shape,levels", [((1, 8, 8), 2), ((3, 8, 8), 256), ((3, 4, 4), 4)])
def test_every_model_builds_and_scores_at_its_defaults_for_grey_and_colour(name, shape, levels):
    torch.manual_seed(0)
    model = genzoo.models.build(name, image_shape=shape, levels=levels)
    x = torch.randint(0, levels, (2, *shape), dtype=torch.uint8)
    out = model.loss(x)
    assert torch.isfinite(out["loss"])
    if name == "vae":
        expected = {2: "bernoulli", 4: "categorical", 256: "logistic"}[levels]
        assert model.decoder_kind == expected


def test_the_cifar_reader_on_a_small_file_in_that_format(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 5).astype(np.uint8)
    planes = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels[:, None], planes.reshape(5, -1)], 1)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(records.tobytes())
    images, got = formats.read_cifar(path)
    assert images.shape == (5, 3, 32, 32) and np.array_equal(images, planes) and np.array_equal(got, labels)
    path.write_bytes(records.tobytes()[:-7])
    with pytest.raises(DataError, match="3073-byte records"):
        formats.read_cifar(path)


def test_cifar10_loads_from_data_dir_in_the_binary_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for fn, n in [(f"data_batch_{i}.bin", 3) for i in range(1, 6)] + [("test_batch.bin", 4)]:
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1).astype(np.uint8)
        (folder / fn).write_bytes(rec.tobytes())
    train, test = data.load("cifar10", "train", tmp_path), data.load("cifar10", "test", tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (4, 3, 32, 32) and train.levels == 256


@needs_binarized
def test_colour_mnist_is_the_static_binarization_in_two_seeded_colours():
    ds = data.load("colour-mnist", "test")
    binary = data.load("binarized-mnist", "test")
    assert ds.images.shape == (10000, 3, 28, 28) and ds.levels == 4 and int(ds.images.max()) <= 3
    x, b = ds.images[:50], binary.images[:50, 0]
    for img, mask in zip(x, b):
        fg, bg = img[:, mask == 1], img[:, mask == 0]
        assert (fg == fg[:, :1]).all() and (bg == bg[:, :1]).all()  # one colour each
        assert (fg[:, 0].long() - bg[:, 0].long()).abs().sum() >= 4  # far enough apart to see
    assert torch.equal(ds.images[:50], data.load("colour-mnist", "test").images[:50])  # fixed seed


@needs_binarized
def test_a_pixelcnn_trains_on_colour_mnist_offline(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "pixelcnn", "--data", "colour-mnist", "--out", str(run), "--epochs", "1", "--minutes", "0.05",
                 "--eval-limit", "50", "--hidden-channels", "6", "--num-layers", "1", "--head-channels", "8",
                 "--threads", "1"]) == 0
    assert genzoo.load(run).image_shape == (3, 28, 28)


def test_a_first_small_folder_trains_every_model_at_its_defaults(tmp_path, capsys):
    # 48 pictures, 24 a class: a seeded 90/10 split leaves 43 to train on, fewer than the default batch of 64.
    # The batch is capped at the training set, said once, and the capped size is what run.json keeps.
    folder = picture_folder(tmp_path / "pics", n=24)
    for name in genzoo.models.names():
        out = tmp_path / name
        assert main(["train", name, "--data", str(folder), "--image-size", "8", "--out", str(out), "--epochs", "1",
                     "--threads", "1"]) == 0, name
        said = capsys.readouterr().out
        assert said.count("batch size 64 is larger than the 43 training images: training with batch size 43") == 1
        assert json.loads((out / "run.json").read_text())["train"]["batch_size"] == 43
        assert len([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]) == 1
    # an explicit batch that fits is left alone, and nothing is said
    assert main(["train", "pixelcnn", "--data", str(folder), "--image-size", "8", "--out", str(tmp_path / "b16"),
                 "--epochs", "1", "--batch-size", "16", "--threads", "1"]) == 0
    assert "larger than" not in capsys.readouterr().out


def _png16(path: Path, grey: np.ndarray) -> None:
    """A 16-bit greyscale PNG written by hand (IHDR bit depth 16), so the test does not trust Pillow's writer."""
    import struct
    import zlib

    h, w = grey.shape
    raw = b"".join(b"\0" + grey[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_pictures_load_as_a_viewer_shows_them_pixel_by_pixel(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    expected = {}
    # 16-bit grey: scaled to 8 bits (v / 257), not clipped (98% of the pixels used to become 255)
    g16 = rng.integers(0, 65536, (6, 6)).astype(np.uint16)
    _png16(root / "a" / "g16.png", g16)
    expected["g16"] = np.repeat(np.rint(g16 / 257).astype(np.uint8)[None], 3, 0)
    # RGBA: the colour under full transparency is not the data; partial alpha is blended on white
    rgba = rng.integers(0, 256, (6, 6, 4)).astype(np.uint8)
    rgba[0, :, 3], rgba[1, :, 3] = 0, 255
    Image.fromarray(rgba, "RGBA").save(root / "a" / "rgba.png")
    a = rgba[..., 3:].astype(np.float64) / 255
    expected["rgba"] = np.rint(rgba[..., :3] * a + 255 * (1 - a)).astype(np.uint8).transpose(2, 0, 1)
    # EXIF orientation 6 (the camera was turned: show it rotated 90 degrees clockwise)
    rgb = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(root / "a" / "exif.png", exif=exif)
    expected["exif"] = np.rot90(rgb, k=-1).transpose(2, 0, 1)  # 6 x 4 after the turn
    # a palette with a transparent entry
    pal = Image.fromarray(np.array([[0, 1, 2] * 2] * 6, np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    pal.info["transparency"] = 2
    pal.save(root / "a" / "pal.png", transparency=2)
    expected["pal"] = np.array([[255, 0, 255], [0, 255, 255], [0, 0, 255]], np.uint8)[:, [0, 1, 2] * 2][:,
                                                                                                        None].repeat(6,
                                                                                                                     1)
    # CMYK: pure cyan and no ink
    cmyk = np.zeros((6, 6, 4), np.uint8)
    cmyk[:3, :, 0] = 255
    Image.fromarray(cmyk, "CMYK").save(root / "a" / "cmyk.tiff")
    expected["cmyk"] = np.full((3, 6, 6), 255, np.uint8)
    expected["cmyk"][0, :3] = 0
    for name in list(expected):  # each its own one-file class folder, so the pictures keep their names
        (root / name).mkdir()
        (f := next((root / "a").glob(f"{name}.*"))).rename(root / name / f.name)
    (root / "a").rmdir()
    from genzoo.data import imagefolder

    for name, want in expected.items():
        (f,) = (root / name).iterdir()
        got = imagefolder._convert(imagefolder._open(f), 3, None)
        assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 1, name
    grey = imagefolder._convert(imagefolder._open(root / "g16" / "g16.png"), 1, None)
    assert np.array_equal(grey[0], np.rint(g16 / 257).astype(np.uint8))


def test_a_run_notices_its_folder_changed_and_follows_it_when_it_moves(tmp_path, capsys):
    folder = picture_folder(tmp_path / "pics", n=12)
    run = tmp_path / "run"
    assert main(["train", "pixelcnn", "--data", str(folder), "--image-size", "8", "--out", str(run), "--epochs", "1",
                 "--batch-size", "8", "--hidden-channels", "4", "--num-layers", "1", "--head-channels", "8",
                 "--threads", "1"]) == 0
    fingerprint = json.loads((run / "run.json").read_text())["data_fingerprint"]
    assert fingerprint["train"]["count"] + fingerprint["test"]["count"] == 24
    capsys.readouterr()
    # pictures added: the seeded 90/10 split reshuffles; eval says so, --resume refuses without leave
    for i in range(10):  # 34 pictures: 3 to test on instead of 2
        Image.fromarray(np.full((9, 9, 3), 20 * i, np.uint8)).save(folder / "cat" / f"added-{i}.png")
    assert main(["eval", str(run)]) == 0
    assert "the test data changed since this run was launched" in capsys.readouterr().err
    assert main(["sample", str(run), "-n", "2", "-o", str(tmp_path / "s.png")]) == 0
    assert "the test data changed since this run was launched" in capsys.readouterr().err
    before = (run / "run.json").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "--allow-changed-data" in capsys.readouterr().err and (run / "run.json").read_bytes() == before
    assert main(["train", "--resume", str(run), "--epochs", "2", "--allow-changed-data"]) == 0
    assert "training on it (--allow-changed-data)" in capsys.readouterr().out
    assert json.loads((run / "run.json").read_text())["data_fingerprint"]["train"]["count"] == 31  # the new data
    # the folder moves: the error says where it was and how to point the run at the new place
    folder.rename(tmp_path / "moved")
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "--data NEW_PLACE" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", str(run), "--data", str(tmp_path / "moved")]) == 0
    assert "changed" not in capsys.readouterr().err  # the same pictures, moved: nothing to say
    (tmp_path / "moved" / "cat" / "added-0.png").unlink()  # moved and changed: --data NEW says so as the old path did
    assert main(["eval", str(run), "--data", str(tmp_path / "moved")]) == 0
    err = capsys.readouterr().err
    assert "data changed since this run was launched" in err and "given by --data" in err
    Image.fromarray(np.full((9, 9, 3), 0, np.uint8)).save(tmp_path / "moved" / "cat" / "added-0.png")
    assert main(["train", "--resume", str(run), "--epochs", "3", "--data", str(tmp_path / "moved")]) == 0
    assert json.loads((run / "run.json").read_text())["data"]["name"] == str(tmp_path / "moved")
    assert main(["eval", str(run)]) == 0 and "changed" not in capsys.readouterr().err


def test_ctrl_c_suggests_resume_only_where_there_is_a_run_to_resume(tmp_path, capsys, monkeypatch):
    from genzoo.cli import pictures, train

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pictures, "run_sample", interrupted)
    assert main(["sample", "row-lstm-binarized-mnist", "-n", "2", "-o", str(tmp_path / "s.png")]) == 130
    assert capsys.readouterr().err.strip() == "genzoo: interrupted"
    monkeypatch.setattr(train, "run", interrupted)
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(tmp_path / "r")]) == 130
    assert "no run folder was made yet" in capsys.readouterr().err
