"""The catalog (what listings show of the models without importing them) is the registry's copy, help.json the
parsers' copy, and the commands that need no model start without torch: genzoo, --help, --version, runs, list, list
--json, and every command's --help (rebuilt from help.json, the same text as the real parser's)."""

import json
import subprocess
import sys

import pytest

import genzoo
from genzoo import catalog
from genzoo.cli import COMMANDS, build_parser, help_shapes, helpshape


def test_the_catalog_is_the_registry():
    assert json.loads(catalog.CATALOG_FILE.read_text()) == catalog.from_registry(), \
        "src/genzoo/catalog.json is stale: make catalog writes it from the registry"
    assert catalog.names() == genzoo.models.names()
    for name in genzoo.models.names():
        assert catalog.likelihood_kind(name) == genzoo.models.get(name).likelihood_kind and catalog.is_model(name)
    assert catalog.likelihood_kind("wavenet") is None and not catalog.is_model(["pixelcnn"])
    assert [(d["name"], tuple(d["splits"]), d["summary"]) for d in catalog.datasets()] == \
        [(n, tuple(splits), summary) for n, (splits, summary) in genzoo.data.DATASETS.items()]
    assert all(catalog.summary(n) == genzoo.models.summary(n) for n in genzoo.models.names())
    for name in genzoo.models.names():  # genzoo list --json's options, as the registry gives them
        entry = catalog.model(name)
        assert entry["option_help"] == genzoo.models.option_help(name)
        assert entry["options"] == {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in genzoo.models.option_defaults(name).items()}


def test_a_model_registered_later_is_found_in_the_registry(monkeypatch):
    from genzoo.models import registry

    monkeypatch.setitem(registry._REGISTRY, "plugin-made", registry.Entry(genzoo.models.get("made"), {}, "a plugin"))
    assert catalog.is_model("plugin-made") and catalog.likelihood_kind("plugin-made") == "exact"


NO_TORCH = """
import sys
from genzoo.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("torch" in sys.modules)
"""


@pytest.mark.parametrize("argv", [[], ["--help"], ["--version"], ["runs", "pretrained"], ["runs", "--help"],
                                  ["list"], ["list", "--json"], ["nonsense"], ["train", "--help"],
                                  ["train", "--data", "digits", "glow", "--help"], ["eval", "--help"],
                                  ["sample", "-h"], ["race", "--help"]])
def test_commands_that_need_no_model_start_without_torch(argv):
    p = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip().splitlines()[-1] == "False", (argv, p.stdout[-500:], p.stderr[-500:])


def test_the_help_lists_every_command_with_its_line_and_each_builds_its_own_parser():
    top = build_parser([])
    text = top.format_help()
    for name, (module, line) in COMMANDS.items():
        assert name in text
        sub = build_parser([name])._subparsers._group_actions[0].choices[name]
        assert any(a.option_strings for a in sub._actions if a.dest != "help"), f"{name}: only the stub was built"
    assert text.index("list") < text.index("train") < text.index("race") < text.index("toy")  # the table's order


def _help(argv) -> str:
    return build_parser(argv)._subparsers._group_actions[0].choices[argv[0]].format_help()


def test_help_rebuilt_from_help_json_is_the_real_parsers_character_for_character(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert json.loads(helpshape.SHAPES_FILE.read_text()) == help_shapes(), \
        "src/genzoo/help.json is stale: make catalog writes it from the parsers"
    cases = [[name] for name in COMMANDS] + [["train", m] for m in genzoo.models.names()]
    for argv in cases:
        real, fast = _help(argv), _help(argv + ["--help"])
        assert real == fast, argv
    # the rebuilt parser really is the shape's, not the module's own: its options carry no type
    train = build_parser(["train", "made", "--help"])._subparsers._group_actions[0].choices["train"]
    assert {a.type for a in train._actions} == {None} and "--hidden-units" in train.format_help()
    assert "--hidden-units" not in _help(["train", "--help"])  # no model named: no model's options


def test_help_of_a_model_help_json_does_not_know_builds_the_real_parser(monkeypatch):
    from genzoo.models import registry

    monkeypatch.setitem(registry._REGISTRY, "plugin-made", registry.Entry(genzoo.models.get("made"), {}, "a plugin"))
    assert "--hidden-units" in _help(["train", "plugin-made", "--help"])
    monkeypatch.setattr(helpshape, "load", lambda: None)  # no help.json (or an unreadable one): the real parser
    train = build_parser(["train", "made", "--help"])._subparsers._group_actions[0].choices["train"]
    assert any(a.type is not None for a in train._actions)


def test_a_model_name_given_as_an_options_value_is_not_the_model():
    from genzoo.cli.parsing import named_model

    names = ["made", "nade"]
    assert named_model(set(), ["--out", "made", "nade"], names) == "nade"
    assert named_model({"--compile"}, ["--compile", "made"], names) == "made"
    assert named_model(set(), ["--out=x", "made"], names) == "made"
    assert named_model(set(), ["--data", "digits"], names) is None
