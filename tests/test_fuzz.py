"""Property-based tests: random arguments at the CLI parser, random bytes at every loader.

Whatever comes in, the answer is a parsed command or one GenzooError: no other
exception (a traceback for the user), and no hang (hypothesis' deadline).
"""

import gzip

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genzoo import checkpoint as ckpt
from genzoo import data
from genzoo.cli import build_parser, main
from genzoo.errors import GenzooError

SETTINGS = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])

WORDS = ["train", "eval", "sample", "complete", "list", "pixelcnn", "gated-pixelcnn", "--data", "digits",
         "--out", "--resume", "--epochs", "--lr", "--batch-size", "-n", "-o", "--seed", "--levels", "--binarize",
         "dynamic", "--hidden-channels", "--kernel", "--minutes", "--threads", "--device", "--conditional",
         "--temperature", "--label", "0", "1", "-1", "3.5", "nan", "inf", "1e999", "", "x.png", "--", "-", "=",
         "--lr=2",
         "/proc/x.png", "/sys/x.png", "/nonexistent/x.png", str(2**63), str(2**64), str(-2**63), "--json", "--limit"]
ARGV = st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=10)


@SETTINGS
@given(ARGV)
def test_the_parser_accepts_or_gives_one_clear_error(argv):
    try:
        build_parser(argv).parse_args(argv)
    except GenzooError as e:
        assert "\n" not in str(e)
    except SystemExit as e:  # only --help / --version exit, and they succeed
        assert e.code == 0


@SETTINGS
@given(st.sampled_from(["eval", "sample", "complete", "reconstruct", "interpolate", "probe", "report", "runs"]), ARGV)
def test_commands_on_random_arguments_exit_0_or_2(tmp_path, command, rest):
    # The folder named is never a run folder here, so no command gets as far as heavy work.
    argv = [command, str(tmp_path / "no-run"), *rest]
    try:
        assert main(argv) == 2
    except SystemExit as e:
        assert e.code == 0


def write(tmp_path, name, blob):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


BLOBS = st.one_of(st.binary(max_size=2000), st.binary(max_size=2000).map(gzip.compress),
                  st.binary(max_size=64).map(lambda b: b"\x00\x00\x08\x03" + b))


@SETTINGS
@given(BLOBS)
def test_idx_loader_on_random_bytes(tmp_path, blob):
    for name, dims in (("f.gz", 3), ("f", 1)):
        try:
            data.read_idx(write(tmp_path, name, blob), dims)
        except GenzooError:
            pass


@SETTINGS
@given(st.one_of(BLOBS, st.text(alphabet="01 \n\r\t2", max_size=3000).map(str.encode)))
def test_amat_loader_on_random_bytes(tmp_path, blob):
    for name in ("f.amat", "f.amat.gz"):
        try:
            rows = data.read_amat(write(tmp_path, name, blob))
            assert rows.shape[1] == 784 and rows.max() <= 1
        except GenzooError:
            pass


@SETTINGS
@given(BLOBS)
def test_checkpoint_readers_on_random_bytes(tmp_path, blob):
    for reader in (ckpt.load_weights, ckpt.load_trainer_state, ckpt.read_json):
        try:
            reader(write(tmp_path, "f.bin", blob))
        except GenzooError:
            pass


def _picture(kind: str, rng):
    """One picture file's (suffix, bytes) of a kind a user's folder may hold."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    if kind == "zero-byte":
        return ".png", b""
    if kind == "truncated":
        Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)).save(buf, "PNG")
        return ".png", buf.getvalue()[:40]
    if kind == "1x1":
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(buf, "PNG")
    elif kind == "16-bit":
        Image.fromarray(rng.integers(0, 65536, (9, 9)).astype(np.uint16)).save(buf, "PNG")
    elif kind == "alpha":
        Image.fromarray(rng.integers(0, 256, (9, 9, 4), dtype=np.uint8), "RGBA").save(buf, "PNG")
    elif kind == "palette":
        Image.fromarray(rng.integers(0, 4, (9, 9), dtype=np.uint8), "P").save(buf, "PNG", transparency=1)
    elif kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = int(rng.integers(1, 9))
        Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(buf, "JPEG", exif=exif)
        return ".jpg", buf.getvalue()
    elif kind == "cmyk":
        Image.fromarray(rng.integers(0, 256, (9, 9, 4), dtype=np.uint8), "CMYK").save(buf, "TIFF")
        return ".tiff", buf.getvalue()
    elif kind == "huge":  # a pixel count Pillow calls a decompression bomb: one line, not a hang
        Image.new("1", (20000, 20000)).save(buf, "PNG")
    return ".png", buf.getvalue()


KINDS = ["zero-byte", "truncated", "1x1", "16-bit", "alpha", "palette", "exif", "cmyk", "huge"]


@settings(max_examples=15, deadline=20000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=5), st.integers(0, 2**32 - 1))
def test_a_folder_of_any_pictures_loads_or_gives_one_clear_error(tmp_path, monkeypatch, kinds, seed):
    import shutil

    import numpy as np

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(seed)
    root = tmp_path / f"pics-{seed}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "a").mkdir(parents=True)
    for i, kind in enumerate(kinds + ["1x1"]):  # at least two files: a train and a test split
        suffix, blob = _picture(kind, rng)
        (root / "a" / f"{i}{suffix}").write_bytes(blob)
    try:
        ds = data.load(str(root), "train", image_size=4)
        assert tuple(ds.images.shape[1:]) in ((3, 4, 4), (1, 4, 4)) and not ds.images.dtype.is_floating_point
    except GenzooError as e:
        assert "\n" not in str(e)


@settings(max_examples=30, deadline=20000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["--device", "--threads"]),
       st.one_of(st.sampled_from(["meta", "cuda:99", "mps", "xla", "cpu:0", "0", "-1", "100000", "2", "cuda"]),
                 st.text(max_size=8)))
def test_device_and_thread_extremes_are_one_line(tmp_path, flag, value):
    try:
        code = main(["sample", "row-lstm-binarized-mnist", "-n", "1", "-o", str(tmp_path / "x.png"), flag, value])
    except SystemExit as e:
        code = e.code
    assert code in (0, 2)


_RUN = {}


def _tiny_run(root):
    """One small trained run folder, made once for the damage fuzz."""
    if "path" not in _RUN:
        run = root / "good"
        assert main(["train", "pixelcnn", "--data", "digits", "--out", str(run), "--epochs", "1", "--hidden-channels",
                     "4",
                     "--num-layers", "1", "--head-channels", "8", "--threads", "1"]) == 0
        _RUN["path"] = run
    return _RUN["path"]


@settings(max_examples=40, deadline=30000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["run.json", "config.json", "model.safetensors", "metrics.jsonl", "evals.jsonl",
                        "checkpoint.json"]),
       st.sampled_from(["truncate", "garbage", "delete", "empty"]), st.integers(0, 10_000), st.binary(max_size=64))
def test_a_damaged_run_folder_is_a_row_or_one_line_never_a_traceback(tmp_path_factory, file, harm, cut, junk):
    import shutil

    root = tmp_path_factory.getbasetemp() / "damage-fuzz"
    good = _tiny_run(root)
    bad = root / "all" / "bad"
    shutil.rmtree(root / "all", ignore_errors=True)
    shutil.copytree(good, bad)
    target = bad / file
    if target.exists():
        blob = target.read_bytes()
        {"truncate": lambda: target.write_bytes(blob[:cut % (len(blob) + 1)]),
         "garbage": lambda: target.write_bytes(junk + blob[len(junk):]),
         "delete": target.unlink, "empty": lambda: target.write_bytes(b"")}[harm]()
    for argv in (["runs", str(root / "all")], ["runs", str(root / "all"), "--json"], ["eval", str(bad), "--limit", "8"],
                 ["sample", str(bad), "-n", "1", "-o", str(root / "s.png")]):
        code = main(argv)
        assert code in (0, 2), argv
        if code == 0 and argv[0] in ("eval", "sample"):  # only where the damage left the model itself as it was
            import torch

            import genzoo

            again, before = genzoo.load(bad), genzoo.load(good)
            assert again.config == before.config
            assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), before.state_dict().values()))
