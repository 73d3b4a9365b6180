"""The catalog (what listings show of the models without importing them) is the registry's copy, and the commands
that need no model start without torch: genzoo, --help, --version, runs, list (the help of a command that runs models
still builds its parser with their options, and imports them)."""

import json
import subprocess
import sys

import pytest

import genzoo
from genzoo import catalog
from genzoo.cli import COMMANDS, build_parser


def test_the_catalog_is_the_registry():
    assert json.loads(catalog.CATALOG_FILE.read_text()) == catalog.from_registry(), \
        "src/genzoo/catalog.json is stale: python -m genzoo.catalog writes it from the registry"
    assert catalog.names() == genzoo.models.names()
    for name in genzoo.models.names():
        assert catalog.likelihood_kind(name) == genzoo.models.get(name).likelihood_kind and catalog.is_model(name)
    assert catalog.likelihood_kind("wavenet") is None and not catalog.is_model(["pixelcnn"])
    assert [(d["name"], tuple(d["splits"]), d["summary"]) for d in catalog.datasets()] == \
        [(n, tuple(splits), summary) for n, (splits, summary) in genzoo.data.DATASETS.items()]
    assert all(catalog.summary(n) == genzoo.models.summary(n) for n in genzoo.models.names())


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
                                  ["list"], ["nonsense"]])
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
