"""The examples the docs show run as shown: the README's Python block, every `genzoo ...` line of the README's
command blocks that names a command genzoo has, and the model lists and capability table of README and CONTRACT
against the registry. (The docstrings' Example: blocks run as doctests in tests/test_layout.py, as zuko's do.)"""

import re
from pathlib import Path

import pytest
import torch

from genzoo.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "binarized_mnist"


@pytest.mark.skipif(not (SHARED / "binarized_mnist_test.amat.gz").exists(), reason="shared binarized MNIST not present")
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    (block,) = re.findall(r"```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(tmp_path)  # it saves "my-model" where it runs
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the project's own README
    assert namespace["x"].shape == (4, 1, 28, 28) and namespace["x"].dtype == torch.uint8
    assert (tmp_path / "my-model" / "config.json").is_file()
    assert namespace["out"]["nll"].shape == (64,)


def test_every_readme_command_line_parses():
    lines = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S)
             for line in block.replace("\\\n", " ").splitlines()]
    commands = [line.split()[1:] for line in lines if line.startswith("genzoo ") and len(line.split()) > 1
                and "--help" not in line]  # help prints and exits
    assert len(commands) > 30
    for argv in commands:
        build_parser(argv).parse_args(argv)  # a stale flag or command in the README raises GenzooError


def test_every_command_line_in_a_docstring_parses():
    src = Path(__file__).resolve().parents[1] / "src" / "genzoo"
    lines = []
    for path in src.rglob("*.py"):
        for line in path.read_text().splitlines():
            text = re.split(r"\s{2,}", line.split("#")[0].strip())[0]  # a gap of spaces, then what it does
            whole = not text.endswith("\\")  # a line continued on the next is not a whole command
            usage = any(re.fullmatch(r"[A-Z][A-Z_]*(\.\w+|\.\.\.)?", w) for w in text.split())  # DIR, N, FILE.png
            if whole and not usage and text.startswith("genzoo ") and text.count("genzoo ") == 1 and "|" not in text:
                lines.append((path.name, text.split()[1:]))
    assert len(lines) >= 5
    for where, argv in lines:
        if "--help" not in argv:
            build_parser(argv).parse_args(argv)  # raises GenzooError on a stale command or flag


CONTRACT = (Path(__file__).resolve().parents[1] / "docs" / "CONTRACT.md").read_text()


def test_the_readme_table_and_the_contract_list_every_registered_model():
    import genzoo

    names = genzoo.models.names()
    table = re.findall(r"^\| `([a-z0-9-]+)` \| ", README.split("| model | paper |")[1].split("\n\n")[0], re.M)
    assert sorted(table) == sorted(names) and len(table) == len(set(table))  # each model once, none missing
    listed = re.search(r"genzoo\.models\.names\(\)\s+# the registry, in this order:\n((?:# .*\n)+)", CONTRACT).group(1)
    assert re.findall(r"'([a-z0-9-]+)'", listed) == names


def test_the_contract_capability_table_says_what_the_registry_declares():
    import genzoo

    rows = re.findall(r"^\| `(\w+)` \| .* \| ((?:`[a-z0-9-]+`(?:, )?)+) \|$", CONTRACT, re.M)
    assert len(rows) >= 7
    for capability, cell in rows:
        declared = [n for n in genzoo.models.names() if getattr(genzoo.models.get(n), capability)]
        assert re.findall(r"`([a-z0-9-]+)`", cell) == declared, capability


def test_the_contract_names_every_shipped_model():
    from genzoo import recipes

    shipped = re.search(r"Shipped: one folder per recipe.*?\(figures", CONTRACT, re.S).group(0)
    assert sorted(re.findall(r"`([a-z0-9-]+)`", shipped)) == sorted(recipes.names())
