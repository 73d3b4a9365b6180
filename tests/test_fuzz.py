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
         "--temperature", "--label", "0", "1", "-1", "3.5", "nan", "inf", "1e999", "", "x.png", "--", "-", "=", "--lr=2",
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
