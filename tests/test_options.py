"""A model declares its run-time options (how it samples, how eval estimates its figure) as its Config declares its
build options; the command line makes its flags from every registered model's, refuses one the model at hand lacks
naming who has it, and names no model family itself."""

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import torch

import genzoo
from genzoo.cli import build_parser, main
from genzoo.models import registry
from genzoo.models.base import GenerativeModel, ImageConfig, Options

CLI = Path(genzoo.__file__).parent / "cli"


@pytest.mark.parametrize("name", genzoo.models.names())
def test_declared_options_are_the_methods_keywords_with_the_same_defaults(name):
    cls = genzoo.models.get(name)
    sample = inspect.signature(cls.sample).parameters
    for f in dataclasses.fields(cls.SampleOptions):
        assert f.name in cls.sample_options and f.name in sample, (name, f.name)
        assert sample[f.name].default == f.default, (name, f.name)
    evaluate = inspect.signature(cls.eval_figures).parameters
    for f in dataclasses.fields(cls.EvalOptions):
        assert f.name in evaluate, (name, f.name)
        if f.default is not None:  # None: "unset", resolved by the options' own check (a corruption's level)
            assert evaluate[f.name].default == f.default, (name, f.name)


def test_no_file_of_the_command_line_names_a_model_family():
    found = []
    for path in CLI.glob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            words = re.findall(r"\w*(?:diffusion|iwae|vae|vq|glow|pixel)\w*", line, re.I)
            found += [f"{path.name}:{n}: {w}" for w in words if w.lower() not in ("pixels", "raw_pixels")]
    assert not found


@dataclasses.dataclass
class _DemoConfig(ImageConfig):
    pass


@dataclasses.dataclass
class _DemoSampling(Options):
    wobble: float = 0.5  # how much each demo sample wobbles
    limits = {"wobble": (0, 1)}


class _Demo(GenerativeModel):
    """A model registered by this test file alone."""

    name = "demo-model"
    Config = _DemoConfig
    likelihood_kind = "exact"
    sample_options = frozenset({"wobble"})
    SampleOptions = _DemoSampling

    def __init__(self, config):
        super().__init__(config)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, x, y=None):
        nll = torch.full((x.shape[0],), float(self.dims * torch.log(torch.tensor(float(self.levels)))))
        return {"loss": nll.mean() + 0 * self.w.sum(), "nll": nll}

    def sample(self, n, generator=None, wobble: float = 0.5, y=None):
        return torch.zeros(n, *self.image_shape, dtype=torch.uint8)


@pytest.fixture
def demo_registered():
    registry.register(_Demo)
    yield
    registry._REGISTRY.pop(_Demo.name)


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("opts") / "run"
    assert main(["train", "pixelcnn", "--data", "digits", "--out", str(out), "--epochs", "1", "--batch-size", "100",
                 "--eval-limit", "50", "--hidden-channels", "4", "--num-layers", "1", "--head-channels", "4",
                 "--threads", "1"]) == 0
    return out


def test_a_model_registered_in_a_test_file_alone_gets_its_flags_and_another_model_refuses_them(
        demo_registered, pixel_run, capsys, tmp_path):
    parser = build_parser(["sample", str(pixel_run), "-o", "x.png"])
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    assert "howmucheachdemosamplewobbles;takenbydemo-model" in help_text
    assert main(["sample", str(pixel_run), "-n", "2", "-o", str(tmp_path / "s.png"), "--wobble", "0.2"]) == 2
    assert "--wobble: pixelcnn takes no such option (taken by demo-model)" in capsys.readouterr().err
    assert main(["sample", str(pixel_run), "-n", "2", "-o", str(tmp_path / "s.png"), "--wobble", "3"]) == 2
    assert "must be <= 1" in capsys.readouterr().err  # the declared limit


def test_an_option_two_models_declare_offers_the_values_and_words_of_both():
    solver = genzoo.models.run_options("SampleOptions")["solver"]
    assert {"ancestral", "dpm++", "heun", "adaptive"} <= set(solver.choices)
    assert "| flow-matching:" in solver.help


def test_an_option_of_another_family_is_refused_naming_its_models(pixel_run, tmp_path, capsys):
    assert main(["sample", str(pixel_run), "-n", "2", "-o", str(tmp_path / "s.png"), "--steps", "5"]) == 2
    takers = ", ".join(n for n in genzoo.models.names()
                       if "steps" in {f.name for f in dataclasses.fields(genzoo.models.get(n).SampleOptions)})
    assert takers.startswith("diffusion, masked-diffusion")
    assert f"--steps: pixelcnn takes no such option (taken by {takers})" in capsys.readouterr().err
    assert main(["eval", str(pixel_run), "--iwae-k", "5"]) == 2
    assert "--iwae-k: pixelcnn takes no such option (taken by vae)" in capsys.readouterr().err
    assert main(["eval", str(pixel_run), "--ddim"]) == 2
    assert "--ddim choose how eval --fid N draws its samples" in capsys.readouterr().err
    assert main(["sample", str(pixel_run), "-n", "2", "-o", str(tmp_path / "s.png"), "--temperature", "0"]) == 2
    assert "must be > 0" in capsys.readouterr().err


def test_every_declared_option_is_a_flag_of_its_commands_with_the_models_words():
    for kind, command in (("SampleOptions", "sample"), ("SampleOptions", "complete"), ("EvalOptions", "eval")):
        parser = build_parser([command])
        flags = {s for a in parser._subparsers._group_actions[0].choices[command]._actions for s in a.option_strings}
        for name, option in registry.run_options(kind).items():
            assert "--" + name.replace("_", "-") in flags, (command, name)
            assert option.help, (kind, name)  # every option says what it means


def test_interpolate_columns_has_its_own_name_and_the_old_one_says_the_new(capsys):
    args = build_parser(["interpolate"]).parse_args(["interpolate", "r", "-o", "x.png", "--steps", "5"])
    assert args.columns == 5
    assert "--steps is now --columns" in capsys.readouterr().err
    assert build_parser(["interpolate"]).parse_args(["interpolate", "r", "-o", "x.png"]).columns == 8
