"""Loaders on files the tests write, on corrupt files, and the transforms."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from genzoo import data
from genzoo.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I",
                                                                           s) for s in array.shape) + array.tobytes()


def write_idx_set(folder: Path, n_train=5, n_test=3, gz=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[prefix] = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
        for kind, a in zip(("images-idx3-ubyte", "labels-idx1-ubyte"), arrays[prefix]):
            name = f"{prefix}-{kind}"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(a)))
            else:
                (folder / name).write_bytes(idx_bytes(a))
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_loader_reads_what_was_written(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "fashion-mnist", gz=gz)
    ds = data.load("fashion-mnist", "train", data_dir=tmp_path)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (5, 1, 28, 28) and ds.levels == 256
    assert np.array_equal(ds.images[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(ds.labels.numpy(), arrays["train"][1])
    assert len(data.load("fashion-mnist", "test", data_dir=tmp_path / "fashion-mnist")) == 3


@pytest.mark.parametrize("corrupt,match", [
    (lambda b: b[: len(b) // 2], "gzip"),  # truncated gzip stream
    (lambda b: b"not gzip at all", "gzip"),
    (lambda b: gzip.compress(b"\x00\x00\x09\x03" + gzip.decompress(b)[4:]), "unsigned byte"),
    (lambda b: gzip.compress(b"\x12\x34\x08\x03" + gzip.decompress(b)[4:]), "magic"),
    (lambda b: gzip.compress(gzip.decompress(b)[:-10]), "truncated"),
    (lambda b: gzip.compress(b"\x00\x00\x08\x01" + gzip.decompress(b)[4:]), "dimensions"),
])
def test_corrupt_idx_files_give_one_clear_error_naming_the_file(tmp_path, corrupt, match):
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError, match=match) as e:
        data.load("mnist", "train", data_dir=tmp_path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def amat_text(rows: np.ndarray) -> str:
    return "".join(" ".join(map(str, r)) + "\n" for r in rows)


@pytest.mark.parametrize("suffix", [".amat", ".amat.gz"])
def test_amat_loader(tmp_path, suffix):
    rows = np.random.default_rng(1).integers(0, 2, (4, 784))
    text = amat_text(rows).encode()
    path = tmp_path / f"binarized_mnist_valid{suffix}"
    path.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
    ds = data.load("binarized-mnist", "valid", data_dir=tmp_path)
    assert ds.levels == 2 and ds.images.shape == (4, 1, 28, 28)
    assert np.array_equal(ds.images.view(4, 784).numpy(), rows)


@pytest.mark.parametrize("text,match", [
    ("0 1 0\n", "784"),
    ("0 1 " * 392 + "\n" + "0 1 " * 391 + "\n", "line 2"),
    (("0 2 " * 392 + "\n"), "0 and 1"),
    (("0.5 " * 784 + "\n"), "0 and 1"),
    ("", "empty"),
])
def test_bad_amat_files(tmp_path, text, match):
    (tmp_path / "binarized_mnist_test.amat").write_text(text)
    with pytest.raises(DataError, match=match):
        data.load("binarized-mnist", "test", data_dir=tmp_path)


def test_missing_file_lists_where_it_looked(tmp_path, monkeypatch):
    # An unreachable download address (nothing listens on port 9) makes the fetch fail fast.
    monkeypatch.setitem(data.datasets._MNIST_FILES["mnist"], "urls", ["http://127.0.0.1:9/"])
    monkeypatch.setattr(data.fetch, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(DataError, match="not found locally and not downloadable"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_download_checks_the_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    good = hashlib.md5(b"hello").hexdigest()
    out = data.download(src.as_uri(), tmp_path / "dl" / "f.bin", good)
    assert out.read_bytes() == b"hello"
    with pytest.raises(DataError, match="md5 check"):
        data.download(src.as_uri(), tmp_path / "dl" / "g.bin", "0" * 32)
    assert not (tmp_path / "dl" / "g.bin").exists()


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="choose from"):
        data.load("cifar-11")
    with pytest.raises(DataError, match="no split"):
        data.load("digits", "valid")


def test_digits_split_is_fixed_and_disjoint():
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    assert (len(tr), len(te)) == (1500, 297) and tr.levels == 17 and tr.image_shape == (1, 8, 8)
    assert int(tr.images.max()) == 16
    assert torch.equal(data.load("digits", "train").images, tr.images)
    # a partition of sklearn's 1797 digits: every image in exactly one split (the data set has a few exact
    # duplicate images, so comparing pixels between the splits cannot tell; counting every image can)
    from collections import Counter

    from sklearn.datasets import load_digits

    def images(x):
        return Counter(bytes(r) for r in x.reshape(len(x), -1).astype("uint8"))

    both = images(tr.images.numpy()) + images(te.images.numpy())
    assert both == images(load_digits().data) and sum(both.values()) == 1797


@pytest.mark.skipif(not (SHARED / "binarized_mnist_test.amat.gz").exists(), reason="shared binarized MNIST not present")
def test_real_binarized_mnist_test_split():
    ds = data.load("binarized-mnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28) and set(ds.images.unique().tolist()) == {0, 1}


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    ds = data.load("fashion-mnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28) and ds.labels.max() == 9


def test_transforms():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    q = data.requantize(x, 256, 4)
    assert q.max() == 3 and torch.equal(torch.bincount(q.flatten().long()), torch.full((4,), 64))
    b = data.binarize(x, 256)
    assert b.sum() == 128 and b.flatten()[128] == 1 and b.flatten()[127] == 0
    g = torch.Generator().manual_seed(0)
    many = torch.stack([data.dynamic_binarize(x, 256, g) for _ in range(400)]).float().mean(0)
    assert torch.allclose(many, x.float() / 255, atol=0.1)


def test_prepare_applies_the_recipe():
    ds, levels, t = data.prepare({"name": "digits", "levels": 4}, "train")
    assert levels == 4 and ds.levels == 4 and int(ds.images.max()) == 3 and t is None
    ds, levels, t = data.prepare({"name": "digits", "binarize": "dynamic"}, "train")
    assert levels == 2 and ds.levels == 17 and t is not None
    assert set(t(ds.images[:5], torch.Generator().manual_seed(0)).unique().tolist()) <= {0, 1}
    test, _, _ = data.prepare({"name": "digits", "binarize": "dynamic"}, "test")
    again, _, _ = data.prepare({"name": "digits", "binarize": "dynamic"}, "test")
    assert torch.equal(test.images, again.images) and test.levels == 2
    with pytest.raises(DataError, match="either"):
        data.prepare({"name": "digits", "levels": 4, "binarize": "threshold"}, "train")


def test_a_parsed_text_file_is_cached_on_first_use_and_parsed_again_when_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    amat = tmp_path / "binarized_mnist_test.amat"
    amat.write_text(("0 1 " * 392).strip() + "\n" + ("1 0 " * 392).strip() + "\n")
    first = data.load("binarized-mnist", "test", data_dir=tmp_path)
    cached = list((tmp_path / "cache" / "genzoo" / "parsed").glob("*.npy"))
    assert len(cached) == 1 and first.images.shape == (2, 1, 28, 28)

    def must_not_parse(*a):
        raise AssertionError("read again although the file did not change")

    monkeypatch.setattr(data.formats, "_open_bytes", must_not_parse)  # the file is not even read
    assert torch.equal(data.load("binarized-mnist", "test", data_dir=tmp_path).images, first.images)  # from the cache
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    amat.write_text(("1 1 " * 392).strip() + "\n")  # changed: another size, so another key
    changed = data.load("binarized-mnist", "test", data_dir=tmp_path)
    assert changed.images.shape == (1, 1, 28, 28) and int(changed.images.sum()) == 784
    for f in (tmp_path / "cache" / "genzoo" / "parsed").glob("*.npy"):
        f.write_bytes(b"torn")  # a damaged cache is parsed again, not trusted
    assert torch.equal(data.load("binarized-mnist", "test", data_dir=tmp_path).images, changed.images)
