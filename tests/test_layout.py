"""The house rules the code is held to (docs/architecture.md): short functions and modules,
the run folder's file names in one module, capabilities declared rather than discovered,
imports running one way, and declarations that tell the truth about the methods."""

import ast
import doctest
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genzoo
from conftest import TINY

SRC = Path(genzoo.__file__).parent
MODULES = sorted(SRC.rglob("*.py"))


def test_no_function_over_60_lines_and_no_module_over_400():
    long = []
    for path in MODULES:
        text = path.read_text()
        if text.count("\n") > 400:
            long.append(f"{path.name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long


def test_the_run_folder_is_named_in_one_module_and_nothing_probes_signatures():
    names = ('"run.json"', '"metrics.jsonl"', '"checkpoint.json"', '"ckpt"')
    for path in MODULES:
        text = path.read_text()
        assert "inspect.signature" not in text, path
        if path.name != "runs.py":
            assert not [n for n in names if n in text], path
    assert (SRC / "cli").is_dir() and not (SRC / "cli.py").exists()


def _imports(path: Path) -> set:
    """genzoo modules imported by ``path`` (absolute names), from its import statements."""
    mod = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            # `from . import data` imports the submodule genzoo.data; `from .runs import Run` imports genzoo.runs
            named = {f"{target}.{a.name}" for a in node.names}
            out |= named if node.module is None else {target} | named
    return out


def test_imports_run_one_way():
    known = {".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in MODULES}
    edges = {m: {t for t in _imports(p) if t in known and t != m} for m, p in known.items()}

    def reaches(a, b, seen=()):
        return b in edges[a] or any(c not in seen and reaches(c, b, (*seen, a)) for c in edges[a])

    # a circle is a module reaching itself; __init__ re-exports its own children, which is not one
    circles = [m for m in known if any(reaches(t, m) for t in edges[m] if not t.startswith(m + "."))]
    assert not circles
    above = {"genzoo.models": ("genzoo.training", "genzoo.runs", "genzoo.report", "genzoo.cli", "genzoo.evaluation",
                               "genzoo.data"),
             "genzoo.data": ("genzoo.training", "genzoo.runs", "genzoo.report", "genzoo.cli", "genzoo.evaluation"),
             "genzoo.evaluation": ("genzoo.training", "genzoo.report", "genzoo.cli"),
             "genzoo.report": ("genzoo.training", "genzoo.cli"),
             "genzoo.training": ("genzoo.report", "genzoo.cli")}
    broken = [(m, t) for m in known for room, banned in above.items() if m.startswith(room + ".") or m == room
              for t in edges[m] if t.startswith(banned)]
    assert not broken


def test_the_rooms_show_the_architecture_and_no_name_collides():
    """src/genzoo/ top level: the small shared modules and the subpackages, nothing else; no two
    modules or packages anywhere share a name (report.py beside cli/report.py confused newcomers)."""
    top = {p.name for p in SRC.iterdir() if not p.name.startswith((".", "__pycache__"))}
    assert top == {"__init__.py", "__main__.py", "checkpoint.py", "errors.py", "grids.py", "likelihood.py",
                   "recipes.py", "runs.py", "catalog.py", "catalog.json", "help.json", "folder_files.py", "cli", "data",
                   "evaluation", "models", "report", "training"}
    names = [p.stem for p in MODULES if p.name != "__init__.py" and p.name != "__main__.py"]
    names += [p.parent.name for p in MODULES if p.name == "__init__.py" and p.parent != SRC]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


FAMILIES = ("adversarial", "autoregressive", "diffusion", "flows", "latent")


def test_models_are_one_package_per_family_and_families_never_import_each_other():
    """models/ holds the registry, the base and the model folder beside one package per family; every registered
    model's class lives in a family package, and no family imports another (a shared piece lives once, below)."""
    room = SRC / "models"
    top = {p.name for p in room.iterdir() if not p.name.startswith((".", "__pycache__"))}
    assert top == {"__init__.py", "base.py", "registry.py", "folder.py", "ais.py", *FAMILIES}  # ais: VAE and GAN
    for name in genzoo.models.names():
        assert genzoo.models.get(name).__module__.split(".")[2] in FAMILIES, name
    for family in FAMILIES:
        for path in (room / family).rglob("*.py"):
            others = {t for t in _imports(path) if t.startswith("genzoo.models.")
                      and t.split(".")[2] in FAMILIES and t.split(".")[2] != family}
            assert not others, (path.name, others)


def _build(name):
    options = TINY.get(name, {})
    return genzoo.models.build(name, image_shape=(1, 4, 4), levels=2, **options)


@pytest.mark.parametrize("name", genzoo.models.names())
def test_declared_capabilities_match_the_methods(name):
    model = _build(name)
    sample = set(inspect.signature(model.sample).parameters)
    assert model.sample_options <= sample
    assert model.can_complete == ({"prefix", "known"} <= sample)
    assert model.has_code == (hasattr(model, "encode") and hasattr(model, "decode"))
    assert model.importance_weighted == ("k" in inspect.signature(model.log_prob).parameters)
    assert model.scored_by_reconstruction == hasattr(model, "reconstruction_error")
    assert model.monte_carlo_bound == hasattr(model, "estimate")
    if model.bound_terms:  # the declared terms are entries of loss() that sum to its nll
        out = model.loss(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
        assert torch.allclose(sum(out[t] for t in model.bound_terms), out["nll"])
    if model.can_sample:
        assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 4, 4)
    else:
        with pytest.raises(genzoo.GenzooError):
            model.sample(2)


def test_presets_are_the_model_with_other_defaults_and_keep_their_name(tmp_path):
    dae = genzoo.models.build("denoising-autoencoder", image_shape=(1, 4, 4), levels=2)
    sae = genzoo.models.build("sparse-autoencoder", image_shape=(1, 4, 4), levels=2, l1=0.5)
    plain = genzoo.models.build("autoencoder", image_shape=(1, 4, 4), levels=2)
    assert type(dae) is type(sae) is type(plain)
    assert (dae.config.corruption, dae.config.noise_level, dae.config.l1) == ("gaussian", 0.3, 0.0)
    assert (sae.config.corruption, sae.config.l1) == ("none", 0.5)
    assert genzoo.models.option_defaults("sparse-autoencoder")["l1"] == 0.1
    dae.save(tmp_path / "dae")
    again = genzoo.load(tmp_path / "dae")
    assert again.name == "denoising-autoencoder" and again.config == dae.config


def test_the_linter_passes_and_catches_a_long_line(tmp_path):
    """ruff, configured in pyproject.toml (line length 120, pycodestyle and pyflakes), passes on src/, tests/ and
    bench/, and would fail a line one character too long."""
    root = SRC.parents[1]
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "bench"], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    long = tmp_path / "long.py"
    long.write_text("x = '" + "a" * 115 + "'\n")  # 121 characters
    caught = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(root / "pyproject.toml"),
                             str(long)], capture_output=True, text=True)
    assert caught.returncode == 1 and "E501" in caught.stdout


def test_every_docstring_example_in_src_runs():
    """The ``Example:`` blocks of src/ docstrings are doctests, run here (as zuko runs its docstrings)."""
    attempted = 0
    for path in MODULES:
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        if name.endswith("__main__"):
            continue
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, name
        attempted += result.attempted
    assert attempted >= 10


@pytest.mark.parametrize("name", genzoo.models.names())
def test_every_registered_model_saves_and_loads_to_the_same_model(name, tmp_path):
    torch.manual_seed(0)
    model = _build(name).eval()
    with torch.no_grad():  # weights away from their initial values, so a load that kept fresh ones would show
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save(tmp_path / name)
    again = genzoo.load(tmp_path / name)
    assert again.name == name and again.config == model.config and again.weights == "raw"
    ours, theirs = model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    if model.likelihood_kind != "none":
        x = torch.randint(0, 2, (3, 1, 4, 4), dtype=torch.uint8)
        torch.manual_seed(1)
        a = model.log_prob(x)
        torch.manual_seed(1)
        assert torch.allclose(a, again.log_prob(x))
